package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/cobrowse-connector/cobrowse-connector/connector/cometd"
	"github.com/cobrowse-connector/cobrowse-connector/connector/gcb/gcbtest"
	"github.com/cobrowse-connector/cobrowse-connector/test/natstest"
	"github.com/cobrowse-connector/cobrowse-connector/test/procs"
)

// The harness runs its NATS server and its Co-browse Server each in a process of its own, so that
// the daemon reaches both over loopback only and shares neither memory nor scheduler with them.
// Both are this very program (the load harness binary, or the test binary under go test) started
// again with helperEnv naming the role: nothing else has to be built, and the helpers always match
// the harness.
const helperEnv = "LOADHARNESS_HELPER"

const (
	roleNATS   = "natsd"
	roleGCB    = "gcb"
	roleHolder = "holder"
)

// helperMain runs the helper role the environment names, if any; ok reports whether it did.
func helperMain() (code int, ok bool) {
	switch role := os.Getenv(helperEnv); role {
	case "":
		return 0, false
	case roleNATS:
		return natsdMain(os.Args[1:]), true
	case roleGCB:
		return gcbMain(os.Args[1:]), true
	case roleHolder:
		return holderMain(os.Args[1:]), true
	default:
		fmt.Fprintf(os.Stderr, "load helper: unknown role %q\n", role)
		return 2, true
	}
}

// natsdMain is a NATS server with JetStream on a file store, on a random loopback port. Once it
// accepts connections it writes "ready <client URL>" on stdout; SIGINT or SIGTERM shuts it down.
func natsdMain(args []string) int {
	fs := flag.NewFlagSet(roleNATS, flag.ContinueOnError)
	store := fs.String("store", "", "JetStream store directory (required)")
	logPath := fs.String("log", "", "server log file; empty: no log")
	prof := fs.Bool("prof", false, "serve Go's pprof on a random loopback port (said on the ready line)")
	if err := fs.Parse(args); err != nil || *store == "" {
		fmt.Fprintln(os.Stderr, "natsd: -store is required")
		return 2
	}
	opts := &server.Options{
		ServerName: "load-natsd",
		Host:       "127.0.0.1",
		Port:       server.RANDOM_PORT,
		JetStream:  true,
		StoreDir:   *store,
		NoSigs:     true,
		NoLog:      *logPath == "",
		LogFile:    *logPath,
	}
	if *prof {
		opts.ProfPort = server.RANDOM_PORT
	}
	ns, err := natstest.Run(opts, 30*time.Second)
	if err != nil {
		fmt.Fprintf(os.Stderr, "natsd: %v\n", err)
		return 1
	}
	if *prof {
		if a := ns.ProfilerAddr(); a != nil { // Start listens before it returns
			fmt.Println("pprof", a.String())
		} else {
			fmt.Fprintln(os.Stderr, "natsd: no profiler address")
		}
	}
	fmt.Println("ready", ns.ClientURL())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	ns.Shutdown()
	ns.WaitForShutdown()
	return 0
}

// gcbMain is a gcbtest Co-browse cluster on loopback with the harness's control API (gcbapi.go).
// Once both serve it writes one JSON line (gcbReady) on stdout; SIGINT or SIGTERM closes them.
func gcbMain(args []string) int {
	fs := flag.NewFlagSet(roleGCB, flag.ContinueOnError)
	nodes := fs.Int("nodes", 2, "cluster size")
	connectTimeout := fs.Duration("connect-timeout", 0, "Bayeux advice timeout (0: gcbtest's default, 30s)")
	maxInterval := fs.Duration("max-interval", 0, "Bayeux session expiry (0: gcbtest's default, 10s)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	c := gcbtest.NewCluster(gcbtest.Options{Nodes: *nodes, ConnectTimeout: *connectTimeout, MaxInterval: *maxInterval})
	defer c.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintf(os.Stderr, "gcb: control listen: %v\n", err)
		return 1
	}
	srv := &http.Server{Handler: (&gcbAPI{c: c}).mux(), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	b, _ := json.Marshal(gcbReady{Front: c.URL(), Control: "http://" + ln.Addr().String()})
	fmt.Println(string(b))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code := 0
	select {
	case <-ctx.Done():
	case err := <-served:
		fmt.Fprintf(os.Stderr, "gcb: control API stopped: %v\n", err)
		code = 1
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx) // waits for the handlers in flight (their waits are bounded)
	return code
}

// gcbAPI serves the control API on a cluster.
type gcbAPI struct {
	c  *gcbtest.Cluster
	rr atomic.Uint64
}

func (a *gcbAPI) mux() *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("POST /create", a.create)
	m.HandleFunc("POST /agent-join", a.agentJoin)
	m.HandleFunc("POST /wait", a.wait)
	m.HandleFunc("GET /stats", a.stats)
	// Diagnosis: the cluster's CPU profile (go tool pprof http://<control>/debug/pprof/profile).
	m.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	return m
}

func reply(w http.ResponseWriter, status int, v any) { procs.ReplyJSON(w, status, v) }

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		reply(w, http.StatusBadRequest, apiError{Error: err.Error()})
		return false
	}
	return true
}

func infoOf(s *gcbtest.Session) sessionInfo {
	in := sessionInfo{Token: s.Token(), HistoryID: s.HistoryID(), Node: s.Node().Name(), State: s.State().String(), EndedBy: s.EndedBy()}
	act, deact := s.Times()
	if !act.IsZero() {
		in.ActivationNs = act.UnixNano()
	}
	if !deact.IsZero() {
		in.DeactivationNs = deact.UnixNano()
	}
	for _, u := range s.Users() {
		if u.Role == 3 {
			in.Controller = true
		}
	}
	return in
}

// create makes n live idle sessions, the customer present, on the nodes in turn.
func (a *gcbAPI) create(w http.ResponseWriter, r *http.Request) {
	var req createRequest
	if !decode(w, r, &req) {
		return
	}
	nodes := len(a.c.Nodes())
	out := createResponse{Sessions: make([]sessionInfo, 0, req.N)}
	for range req.N {
		s, err := a.c.CreateSession(int(a.rr.Add(1)-1) % nodes)
		if err != nil {
			reply(w, http.StatusInternalServerError, apiError{Error: err.Error()})
			return
		}
		out.Sessions = append(out.Sessions, infoOf(s))
	}
	reply(w, http.StatusOK, out)
}

// agentJoin plays each agent joining its session (slave.html): the session becomes active.
func (a *gcbAPI) agentJoin(w http.ResponseWriter, r *http.Request) {
	var req agentRequest
	if !decode(w, r, &req) {
		return
	}
	var out agentResponse
	for _, j := range req.Joins {
		s := a.c.Session(j.Token)
		if s == nil {
			out.Failed = append(out.Failed, j.Token+": unknown session")
			continue
		}
		if err := s.AgentJoin(j.AgentID, j.AgentID); err != nil {
			out.Failed = append(out.Failed, fmt.Sprintf("%s: %v", j.Token, err))
			continue
		}
		out.Joined++
	}
	reply(w, http.StatusOK, out)
}

// wait waits, within the request's bound, until every session has a Controller present (for
// "controller") or has ended (for "ended"), and answers how many did.
func (a *gcbAPI) wait(w http.ResponseWriter, r *http.Request) {
	var req waitRequest
	if !decode(w, r, &req) {
		return
	}
	if req.For != waitController && req.For != waitEnded {
		reply(w, http.StatusBadRequest, apiError{Error: "for: want controller or ended"})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), time.Duration(req.TimeoutMs)*time.Millisecond)
	defer cancel()
	var out waitResponse
	for _, tok := range req.Tokens {
		s := a.c.Session(tok)
		if s == nil {
			out.Unknown = append(out.Unknown, tok)
			continue
		}
		var err error
		switch req.For {
		case waitController:
			_, err = s.WaitUser(ctx, 3)
		case waitEnded:
			select {
			case <-s.Done():
			case <-ctx.Done():
				err = ctx.Err()
			}
		}
		if err != nil {
			if len(out.Pending) < 10 {
				out.Pending = append(out.Pending, tok)
			}
			out.NotDone++
		} else {
			out.Done++
		}
		if req.Detail {
			out.Sessions = append(out.Sessions, infoOf(s))
		}
	}
	reply(w, http.StatusOK, out)
}

func (a *gcbAPI) stats(w http.ResponseWriter, _ *http.Request) {
	out := statsResponse{Live: a.c.LiveSessions()}
	out.Remembered = len(a.c.Sessions())
	for _, n := range a.c.Nodes() {
		st := n.Stats()
		out.Nodes = append(out.Nodes, nodeStats{
			Name: n.Name(), Up: st.Up, Handshakes: st.Handshakes, WebSocketConns: st.WebSocketConns,
			LongPollRequests: st.LongPollRequests, BayeuxSessions: st.BayeuxSessions, HeldConnects: st.HeldConnects,
		})
	}
	reply(w, http.StatusOK, out)
}

// holderMain is the anchor of the live measurement: a bare client that holds sessions as the
// daemon does, and nothing else. It says "ready" on stdout, then joins as Controller every session
// whose token it reads on stdin (one a line, until EOF), 16 at a time (the daemon's default join
// slots per node), each with the four steps of bareJoin, says "joined N", then "activated N" once
// the server has told it of every session's activation (the agents joining), and holds them until
// SIGINT or SIGTERM. A failure is a line "failed <why>" and exit status 1.
func holderMain(args []string) int {
	fs := flag.NewFlagSet(roleHolder, flag.ContinueOnError)
	front := fs.String("front", "", "the Co-browse cluster URL (required)")
	transports := fs.String("transports", "websocket,long-polling", "CometD transports, in order of preference")
	if err := fs.Parse(args); err != nil || *front == "" {
		fmt.Fprintln(os.Stderr, "holder: -front is required")
		return 2
	}
	fmt.Println("ready")
	var tokens []string
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		if t := strings.TrimSpace(sc.Text()); t != "" {
			tokens = append(tokens, t)
		}
	}
	var activated atomic.Int64
	allActivated := make(chan struct{})
	var once sync.Once
	onMessage := func(m cometd.Message) {
		if m.Channel == "/service/session/activated" && activated.Add(1) == int64(len(tokens)) {
			once.Do(func() { close(allActivated) })
		}
	}
	rt := http.DefaultTransport.(*http.Transport).Clone()
	clients := make([]*cometd.Client, len(tokens))
	defer func() {
		for _, c := range clients {
			if c != nil {
				_ = c.Close()
			}
		}
		rt.CloseIdleConnections()
	}()
	work := make(chan int)
	var wg sync.WaitGroup
	var failMu sync.Mutex
	var failed error
	for range 16 {
		wg.Go(func() {
			for i := range work {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				c, _, err := bareJoinWith(ctx, *front, rt, tokens[i], strings.Split(*transports, ","), onMessage)
				cancel()
				if err != nil {
					failMu.Lock()
					failed = errors.Join(failed, err)
					failMu.Unlock()
					continue
				}
				clients[i] = c
			}
		})
	}
	for i := range tokens {
		work <- i
	}
	close(work)
	wg.Wait()
	if failed != nil {
		fmt.Printf("failed %v\n", strings.ReplaceAll(failed.Error(), "\n", "; "))
		return 1
	}
	fmt.Println("joined", len(tokens))
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	select {
	case <-allActivated:
		fmt.Println("activated", activated.Load())
		<-sig
	case <-sig:
	}
	return 0
}

// errNoHelper is returned when the harness cannot find its own executable to start a helper.
var errNoHelper = errors.New("cannot find the harness's own executable to start its helper processes")
