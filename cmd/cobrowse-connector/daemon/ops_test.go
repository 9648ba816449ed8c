package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cobrowse-connector/cobrowse-connector/chat"
	"github.com/cobrowse-connector/cobrowse-connector/configs"
	"github.com/cobrowse-connector/cobrowse-connector/connector"
	"github.com/cobrowse-connector/cobrowse-connector/connector/gcb/gcbtest"
	"github.com/cobrowse-connector/cobrowse-connector/test/natstest"
)

// opsWait bounds every wait of these tests; nothing sleeps.
const opsWait = 20 * time.Second

// opsConfig is the http section of a test's internal listener: any free loopback port.
func opsConfig(pprof bool) configs.HTTPConfig {
	h := configs.Default().HTTP
	h.Listen, h.Pprof = "127.0.0.1:0", pprof
	return h
}

// startOps runs an internal listener for the test.
func startOps(t *testing.T, h configs.HTTPConfig, r *readiness) string {
	t.Helper()
	o, err := newOpsServer(h, newMetrics(r).reg, r, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	o.start()
	t.Cleanup(o.shutdown)
	return "http://" + o.Addr()
}

// get asks url and returns the status and the body.
func get(t *testing.T, url string, header ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	c := &http.Client{Timeout: opsWait}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// waitStatus asks url until it answers code, and returns the body of that answer.
func waitStatus(t *testing.T, url string, code int) string {
	t.Helper()
	deadline := time.Now().Add(opsWait)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		got, body := get(t, url)
		if got == code {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s answers %d, want %d:\n%s", url, got, code, body)
		}
		<-tick.C
	}
}

// verboseJSON reads /readyz?verbose as JSON.
func verboseJSON(t *testing.T, base string) (int, readyReport) {
	t.Helper()
	code, body := get(t, base+"/readyz?verbose", "Accept", "application/json")
	var rep readyReport
	if err := json.Unmarshal([]byte(body), &rep); err != nil {
		t.Fatalf("readyz json %q: %v", body, err)
	}
	return code, rep
}

func checkOf(rep readyReport, name string) check {
	for _, c := range rep.Checks {
		if c.Name == name {
			return c
		}
	}
	return check{Name: name, Detail: "absent"}
}

// TestReadinessFollowsNATSAndTheConsumer: /readyz on a real listener, over a real NATS server and a
// real inbound consumer. 503 until both are there; 200 while NATS is connected and the consumer
// pulls, whatever the vendors' breakers say (an open one is reported in ?verbose, the status stays
// 200); 503 while NATS is gone, 200 once it is back; 503 when the consumer stops, and while the
// daemon shuts down. /healthz answers 200 throughout.
func TestReadinessFollowsNATSAndTheConsumer(t *testing.T) {
	r := &readiness{}
	base := startOps(t, opsConfig(false), r)
	ready := base + "/readyz"
	if code, body := get(t, ready); code != http.StatusServiceUnavailable ||
		!strings.Contains(body, "nats: not connected yet") || !strings.Contains(body, "consumer: not started yet") {
		t.Fatalf("before NATS: %d %q", code, body)
	}
	if code, body := get(t, base+"/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Fatalf("healthz: %d %q", code, body)
	}

	s := natstest.Start(t)
	nc, err := nats.Connect(s.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), opsWait)
	defer cancel()
	consumer, err := chat.NewConsumer(ctx, js, chat.Config{PinnedTTL: time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	r.setNATS(nc)
	r.setConsumer(consumer)
	if code, rep := verboseJSON(t, base); code != http.StatusServiceUnavailable || !checkOf(rep, "nats").OK ||
		checkOf(rep, "consumer").OK || checkOf(rep, "consumer").Detail != "stopped" {
		t.Fatalf("consumer not running: %d %+v", code, rep)
	}

	runCtx, stopRun := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() {
		runDone <- consumer.Run(runCtx, chat.HandlerFunc(func(ctx context.Context, in chat.Inbound) { _ = in.Delivery.Ack(ctx) }))
	}()
	stop := sync.OnceValue(func() error { stopRun(); return <-runDone })
	t.Cleanup(func() { _ = stop() })
	if body := waitStatus(t, ready, http.StatusOK); body != "ok\n" {
		t.Fatalf("ready: %q", body)
	}

	// A vendor whose breaker is open: reported, never deciding.
	breakers := connector.NewBreakers(connector.BreakerSettings{FailuresToTrip: 1, OpenFor: time.Hour})
	const node = "http://gcb-node-1.example:8700/cobrowse"
	_ = breakers.Do(node, "join", func() error {
		return &connector.ServerError{Op: "join", Node: node, Kind: connector.ErrUnavailable, Err: errors.New("connection refused")}
	})
	r.setVendors([]vendorBreakers{{vendor: "genesys", breakers: breakers}, {vendor: "cec", breakers: connector.NewBreakers(connector.BreakerSettings{})}})
	code, rep := verboseJSON(t, base)
	if code != http.StatusOK || !rep.Ready || len(rep.Vendors) != 2 || rep.Vendors[0].Vendor != "genesys" ||
		len(rep.Vendors[0].Nodes) != 1 || rep.Vendors[0].Nodes[0] != (nodeHealth{Node: node, Breaker: "open"}) || len(rep.Vendors[1].Nodes) != 0 {
		t.Fatalf("with an open breaker: %d %+v", code, rep)
	}
	code, text := get(t, ready+"?verbose")
	for _, want := range []string{"[+] nats: connected to nats://127.0.0.1:", "[+] consumer: pulling", "genesys " + node + ": breaker open", "cec: no call yet", "\nready\n"} {
		if code != http.StatusOK || !strings.Contains(text, want) {
			t.Errorf("verbose text (%d) lacks %q:\n%s", code, want, text)
		}
	}

	s.Shutdown()
	s.WaitForShutdown()
	waitStatus(t, ready, http.StatusServiceUnavailable)
	if code, rep := verboseJSON(t, base); code != http.StatusServiceUnavailable || rep.Ready || checkOf(rep, "nats").OK {
		t.Fatalf("NATS gone: %d %+v", code, rep)
	}
	if code, _ := get(t, base+"/healthz"); code != http.StatusOK {
		t.Fatalf("healthz with NATS gone: %d", code)
	}
	s.Restart(t)
	waitStatus(t, ready, http.StatusOK)

	if err := stop(); err != nil {
		t.Fatalf("consumer: %v", err)
	}
	if body := waitStatus(t, ready, http.StatusServiceUnavailable); !strings.Contains(body, "consumer: stopped") {
		t.Fatalf("consumer stopped: %q", body)
	}
	r.stopping.Store(true)
	if _, body := get(t, ready); !strings.Contains(body, "shutdown: shutting down") {
		t.Fatalf("shutting down: %q", body)
	}
}

// TestPprofOnlyWhenEnabled: /debug/pprof is not there (404) unless http.pprof is set; when it is,
// a CPU profile may run longer than http.write_timeout.
func TestPprofOnlyWhenEnabled(t *testing.T) {
	off := startOps(t, opsConfig(false), &readiness{})
	for _, p := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/heap", "/nothing"} {
		if code, _ := get(t, off+p); code != http.StatusNotFound {
			t.Errorf("pprof off: %s answers %d, want 404", p, code)
		}
	}
	h := opsConfig(true)
	h.WriteTimeout = configs.Duration{Duration: 200 * time.Millisecond}
	on := startOps(t, h, &readiness{})
	if code, body := get(t, on+"/debug/pprof/"); code != http.StatusOK || !strings.Contains(body, "goroutine") {
		t.Fatalf("pprof on: index %d", code)
	}
	if code, body := get(t, on+"/debug/pprof/profile?seconds=1"); code != http.StatusOK || len(body) == 0 {
		t.Fatalf("a 1s profile with a 200ms write time-out: %d %q", code, body)
	}
}

// TestMetricsEndpoint: /metrics serves the daemon's own registry in the Prometheus text format:
// the build info, the readiness, the Go runtime and the process.
func TestMetricsEndpoint(t *testing.T) {
	base := startOps(t, opsConfig(false), &readiness{})
	code, body := get(t, base+"/metrics")
	for _, want := range []string{
		`cobrowse_build_info{goversion="` + GoVersion() + `",version="` + BuildVersion() + `"} 1`,
		"# HELP cobrowse_ready ", "cobrowse_ready 0", "go_goroutines ", "process_resident_memory_bytes ",
	} {
		if code != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("metrics (%d) lack %q", code, want)
		}
	}
}

// TestHealthCommandExitCodes: the health command against the real daemon's internal listener:
// 1 while the daemon waits for NATS (the answer printed names what is missing), 0 once it
// consumes, 1 when nothing listens any more.
func TestHealthCommandExitCodes(t *testing.T) {
	ns := natstest.Start(t)
	ns.Shutdown()
	ns.WaitForShutdown()
	cluster := gcbtest.NewCluster(gcbtest.Options{Nodes: 1})
	t.Cleanup(cluster.Close)
	cfg := configs.Default()
	cfg.NATS.URL = ns.ClientURL()
	cfg.NATS.ConnectWait = configs.Duration{Duration: time.Minute}
	cfg.Genesys.URL = cluster.URL()
	cfg.HTTP.Listen = "127.0.0.1:0"

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, cfg, Options{Logger: slog.New(slog.DiscardHandler), InternalAddr: func(a string) { addr <- a }})
	}()
	var url string
	select {
	case a := <-addr:
		url = "http://" + a + "/readyz?verbose"
	case err := <-done:
		t.Fatalf("daemon: %v", err)
	case <-time.After(opsWait):
		t.Fatal("no internal listener")
	}
	var out, errOut strings.Builder
	if code := Health(t.Context(), url, &out, &errOut); code != 1 ||
		!strings.Contains(out.String(), "[-] nats: not connected yet") || !strings.Contains(errOut.String(), "503") {
		t.Fatalf("waiting for NATS: exit %d, %q, %q", code, out.String(), errOut.String())
	}

	ns.Restart(t)
	waitStatus(t, url, http.StatusOK)
	out.Reset()
	errOut.Reset()
	if code := Health(t.Context(), url, &out, &errOut); code != 0 || !strings.Contains(out.String(), "[+] consumer: pulling") || errOut.Len() != 0 {
		t.Fatalf("ready: exit %d, %q, %q", code, out.String(), errOut.String())
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("daemon: %v", err)
		}
	case <-time.After(opsWait):
		t.Fatal("daemon did not stop")
	}
	errOut.Reset()
	if code := Health(t.Context(), url, io.Discard, &errOut); code != 1 || !strings.Contains(errOut.String(), "connection refused") {
		t.Fatalf("nothing listening: exit %d, %q", code, errOut.String())
	}
	if code := Health(t.Context(), "ftp://127.0.0.1/readyz", io.Discard, &errOut); code != 1 {
		t.Fatalf("not an http URL: exit %d", code)
	}
}

func TestReadyURL(t *testing.T) {
	for listen, want := range map[string]string{
		":9180":            "http://127.0.0.1:9180/readyz?verbose",
		"0.0.0.0:9180":     "http://127.0.0.1:9180/readyz?verbose",
		"[::]:9180":        "http://127.0.0.1:9180/readyz?verbose",
		"127.0.0.2:9180":   "http://127.0.0.2:9180/readyz?verbose",
		"[::1]:9180":       "http://[::1]:9180/readyz?verbose",
		"ops.internal:80":  "http://ops.internal:80/readyz?verbose",
		"":                 "http.listen is empty",
		"127.0.0.1:0":      "any free port",
		"no-port-anywhere": "http.listen: ",
	} {
		got, err := ReadyURL(listen)
		if err != nil {
			got = err.Error()
		}
		if !strings.Contains(got, want) {
			t.Errorf("ReadyURL(%q) = %q, want %q", listen, got, want)
		}
	}
}

// pullerFunc states a pull status, for the one decision below.
type pullerFunc func() chat.PullStatus

func (f pullerFunc) PullStatus() chat.PullStatus { return f() }

// TestConsumerCheckDecides: the consumer counts as ready while it pulls, and while the membership
// gives its member no partition (what the operator made: nothing is wrong); not while its pulls
// fail, while it sets up, or once stopped.
func TestConsumerCheckDecides(t *testing.T) {
	for _, tc := range []struct {
		st     chat.PullStatus
		ok     bool
		detail string
	}{
		{chat.PullStatus{State: chat.PullPulling}, true, "pulling"},
		{chat.PullStatus{State: chat.PullPulling, LastPull: time.Now()}, true, "pulling (last pull ended "},
		{chat.PullStatus{State: chat.PullIdle}, true, "idle: this member has no partition"},
		{chat.PullStatus{State: chat.PullFailing, Failures: 3, LastError: "nats: no heartbeat received"}, false,
			"pulling failed 3 times in a row: nats: no heartbeat received"},
		{chat.PullStatus{State: chat.PullStarting}, false, "setting up"},
		{chat.PullStatus{State: chat.PullStopped}, false, "stopped"},
	} {
		c := consumerCheck(pullerFunc(func() chat.PullStatus { return tc.st }))
		if c.OK != tc.ok || !strings.HasPrefix(c.Detail, tc.detail) {
			t.Errorf("%s: %+v, want ok %v and %q", tc.st.State, c, tc.ok, tc.detail)
		}
	}
}

// FuzzReadyURL: whatever http.listen holds, ReadyURL refuses it or makes an http URL of /readyz on
// the same port.
func FuzzReadyURL(f *testing.F) {
	for _, s := range []string{":9180", "0.0.0.0:9180", "[::]:9180", "[::1]:80", "host:1", "", ":0", "a:b:c", "[fe80::1%eth0]:9180", "h/x:1", "h?:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, listen string) {
		got, err := ReadyURL(listen)
		if err != nil {
			return
		}
		u, perr := url.Parse(got)
		_, port, _ := net.SplitHostPort(listen)
		if perr != nil || u.Scheme != "http" || u.Path != "/readyz" || u.RawQuery != "verbose" || u.Port() != port {
			t.Fatalf("ReadyURL(%q) = %q (%v)", listen, got, perr)
		}
	})
}
