package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cobrowse-connector/cobrowse-connector/chat"
	"github.com/cobrowse-connector/cobrowse-connector/configs"
	"github.com/cobrowse-connector/cobrowse-connector/connector"
)

// readiness decides whether the daemon is ready: NATS connected and the inbound consumer pulling.
// Vendors are reported beside, for information, and never decide it: a vendor's outage must not
// take the pod out of its Service (nor make an orchestrator restart it), since the daemon still
// does all the rest (ends, attaches, the other vendors) and recovers on its own when the vendor
// comes back. Run hands it the parts as they come up; until then it says what is missing.
type readiness struct {
	stopping atomic.Bool

	mu       sync.Mutex
	nc       *nats.Conn
	consumer puller
	vendors  []vendorBreakers
}

// puller is the inbound consumer as the readiness sees it (*chat.Consumer).
type puller interface{ PullStatus() chat.PullStatus }

// vendorBreakers are one vendor's circuit breakers.
type vendorBreakers struct {
	vendor   string
	breakers *connector.Breakers
}

func (r *readiness) setNATS(nc *nats.Conn) {
	r.mu.Lock()
	r.nc = nc
	r.mu.Unlock()
}

func (r *readiness) setConsumer(c puller) {
	r.mu.Lock()
	r.consumer = c
	r.mu.Unlock()
}

func (r *readiness) setVendors(v []vendorBreakers) {
	r.mu.Lock()
	r.vendors = v
	r.mu.Unlock()
}

func (r *readiness) vendorBreakers() []vendorBreakers {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.vendors
}

// check is one readiness check's outcome.
type check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// vendorHealth is a vendor's health as its circuit breakers see it: for information only.
type vendorHealth struct {
	Vendor string       `json:"vendor"`
	Nodes  []nodeHealth `json:"nodes"`
}

type nodeHealth struct {
	Node    string `json:"node"`
	Breaker string `json:"breaker"` // closed, half-open, open
	// ConsecutiveFailures counts the calls that failed in a row; 0 with a closed breaker: the last
	// call succeeded.
	ConsecutiveFailures uint32 `json:"consecutiveFailures"`
}

// readyReport is what /readyz?verbose answers.
type readyReport struct {
	Ready   bool           `json:"ready"`
	Checks  []check        `json:"checks"`
	Vendors []vendorHealth `json:"vendors"`
}

// ready reports whether the daemon is ready, without the vendors.
func (r *readiness) ready() bool { return r.report(false).Ready }

// report runs the checks, and reads the vendors' breakers when withVendors.
func (r *readiness) report(withVendors bool) readyReport {
	r.mu.Lock()
	nc, consumer, vendors := r.nc, r.consumer, r.vendors
	r.mu.Unlock()
	rep := readyReport{Checks: []check{natsCheck(nc), consumerCheck(consumer)}}
	if r.stopping.Load() {
		rep.Checks = append(rep.Checks, check{Name: "shutdown", Detail: "shutting down"})
	}
	rep.Ready = true
	for _, c := range rep.Checks {
		rep.Ready = rep.Ready && c.OK
	}
	if withVendors {
		for _, v := range vendors {
			h := vendorHealth{Vendor: v.vendor, Nodes: []nodeHealth{}}
			for _, n := range v.breakers.Nodes() {
				h.Nodes = append(h.Nodes, nodeHealth{Node: n.Node, Breaker: string(n.State), ConsecutiveFailures: n.ConsecutiveFailures})
			}
			rep.Vendors = append(rep.Vendors, h)
		}
	}
	return rep
}

func natsCheck(nc *nats.Conn) check {
	c := check{Name: "nats"}
	switch {
	case nc == nil:
		c.Detail = "not connected yet"
	case nc.IsConnected():
		c.OK, c.Detail = true, "connected to "+nc.ConnectedUrlRedacted()
	default:
		c.Detail = strings.ToLower(nc.Status().String())
	}
	return c
}

func consumerCheck(p puller) check {
	c := check{Name: "consumer"}
	if p == nil {
		c.Detail = "not started yet"
		return c
	}
	st := p.PullStatus()
	switch st.State {
	case chat.PullPulling:
		c.OK, c.Detail = true, "pulling"
		if !st.LastPull.IsZero() {
			c.Detail += fmt.Sprintf(" (last pull ended %s ago)", time.Since(st.LastPull).Round(time.Millisecond))
		}
	case chat.PullIdle:
		// A member the group gives no partition is what the operator made; it is healthy.
		c.OK, c.Detail = true, "idle: this member has no partition (cobrowse-connector cluster add)"
	case chat.PullFailing:
		c.Detail = fmt.Sprintf("pulling failed %d times in a row: %s", st.Failures, st.LastError)
	case chat.PullStarting:
		c.Detail = "setting up the member's consumer"
	default:
		c.Detail = "stopped"
	}
	return c
}

// writeText writes the report as lines of text.
func (rep readyReport) writeText(w *strings.Builder) {
	for _, c := range rep.Checks {
		mark := "[+]"
		if !c.OK {
			mark = "[-]"
		}
		fmt.Fprintf(w, "%s %s: %s\n", mark, c.Name, c.Detail)
	}
	if len(rep.Vendors) > 0 {
		w.WriteString("vendors (for information: they never make the daemon unready):\n")
	}
	for _, v := range rep.Vendors {
		if len(v.Nodes) == 0 {
			fmt.Fprintf(w, "    %s: no call yet\n", v.Vendor)
		}
		for _, n := range v.Nodes {
			state := "breaker " + n.Breaker
			switch {
			case n.Breaker == string(connector.BreakerClosed) && n.ConsecutiveFailures == 0:
				state += ", last call ok"
			case n.ConsecutiveFailures > 0:
				state += fmt.Sprintf(", %d calls failed in a row", n.ConsecutiveFailures)
			}
			fmt.Fprintf(w, "    %s %s: %s\n", v.Vendor, n.Node, state)
		}
	}
	if rep.Ready {
		w.WriteString("ready\n")
	} else {
		w.WriteString("not ready\n")
	}
}

// opsServer is the internal listener (http.listen): metrics, liveness, readiness and, when
// http.pprof is set, the profiler. It is for the pod's probes and the metrics scraper, not for the
// internet: it has no authentication.
type opsServer struct {
	srv          *http.Server
	ln           net.Listener
	log          *slog.Logger
	writeTimeout time.Duration
	done         chan struct{}
}

// opsShutdownBound bounds the internal listener's graceful shutdown.
const opsShutdownBound = 2 * time.Second

// maxProfileSeconds bounds how long a profile asked from /debug/pprof may run.
const maxProfileSeconds = 3600

// The probe paths of the internal listener: liveness (never depends on NATS or the vendors) and
// readiness (NATS connected and the consumer pulling). test/deploy checks the manifests' probes
// against them.
const (
	LivenessPath  = "/healthz"
	ReadinessPath = "/readyz"
)

// newOpsServer listens on http.listen (a port in use fails the start) and builds the handlers.
// Nil when http.listen is empty.
func newOpsServer(h configs.HTTPConfig, reg *prometheus.Registry, r *readiness, log *slog.Logger) (*opsServer, error) {
	if h.Listen == "" {
		return nil, nil
	}
	l := log.With("component", "ops")
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(l.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
	}))
	mux.HandleFunc("GET "+LivenessPath, func(w http.ResponseWriter, _ *http.Request) { writePlain(w, http.StatusOK, "ok\n") })
	mux.HandleFunc("GET "+ReadinessPath, r.serveHTTP)
	if h.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.Handle("/", http.MaxBytesHandler(http.NotFoundHandler(), maxOtherBody))
	o := &opsServer{log: l, writeTimeout: h.WriteTimeout.D(), done: make(chan struct{})}
	o.srv = newHTTPServer(h, o.withWriteDeadline(mux), l)
	// No server-wide write time-out: withWriteDeadline sets each answer's, so that a CPU profile
	// may run for the seconds it asks for (pprof refuses a profile longer than the server's
	// WriteTimeout).
	o.srv.WriteTimeout = 0
	ln, err := net.Listen("tcp", h.Listen)
	if err != nil {
		return nil, fmt.Errorf("http.listen: %w", err)
	}
	o.ln = ln
	return o, nil
}

// withWriteDeadline gives each answer http.write_timeout to be written, and a profile or trace
// of the profiler also the seconds it runs for.
func (o *opsServer) withWriteDeadline(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d := o.writeTimeout
		if strings.HasPrefix(r.URL.Path, "/debug/pprof/") {
			secs := 0
			switch r.URL.Path {
			case "/debug/pprof/profile":
				secs = 30 // pprof's default
			case "/debug/pprof/trace":
				secs = 1
			}
			if s, err := strconv.Atoi(r.URL.Query().Get("seconds")); err == nil && s > 0 {
				secs = min(s, maxProfileSeconds)
			}
			d += time.Duration(secs) * time.Second
		}
		if d > 0 {
			_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(d))
		}
		next.ServeHTTP(w, r)
	})
}

// Addr is the address the listener listens on.
func (o *opsServer) Addr() string { return o.ln.Addr().String() }

// start serves on a goroutine until shutdown.
func (o *opsServer) start() {
	o.log.Info("internal listener serving", "addr", o.Addr())
	go func() {
		defer close(o.done)
		if err := o.srv.Serve(o.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			o.log.Error("internal listener stopped", "error", err)
		}
	}()
}

// shutdown stops taking requests and lets those in flight finish within opsShutdownBound (a
// profile being taken is cut short), then waits for the serving goroutine.
func (o *opsServer) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), opsShutdownBound)
	defer cancel()
	if err := o.srv.Shutdown(ctx); err != nil {
		_ = o.srv.Close()
	}
	<-o.done
}

// serveHTTP answers /readyz: 200 when ready, 503 when not; ?verbose lists each check and the
// vendors' health, as text, or as JSON when the client accepts application/json.
func (r *readiness) serveHTTP(w http.ResponseWriter, req *http.Request) {
	verbose := req.URL.Query().Has("verbose")
	rep := r.report(verbose)
	code := http.StatusOK
	if !rep.Ready {
		code = http.StatusServiceUnavailable
	}
	if verbose && strings.Contains(req.Header.Get("Accept"), "application/json") {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(rep)
		return
	}
	var b strings.Builder
	switch {
	case verbose:
		rep.writeText(&b)
	case rep.Ready:
		b.WriteString("ok\n")
	default:
		b.WriteString("not ready:")
		for _, c := range rep.Checks {
			if !c.OK {
				fmt.Fprintf(&b, " %s: %s;", c.Name, c.Detail)
			}
		}
		b.WriteString("\n")
	}
	writePlain(w, code, b.String())
}

func writePlain(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(body))
}
