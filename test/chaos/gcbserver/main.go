// Command gcbserver runs a gcbtest Co-browse cluster in a process of its own, for the chaos
// harness (test/chaos): the daemon under test reaches the cluster only over loopback HTTP, as it
// would reach a real one, and the harness drives the customer, the agent and the node faults
// through a small control API (package test/chaos/control).
//
// Once it serves, it writes one JSON line (control.Ready) on stdout; SIGINT or SIGTERM closes the
// cluster and exits.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector/gcb/gcbtest"
	"github.com/cobrowse-connector/cobrowse-connector/test/chaos/control"
	"github.com/cobrowse-connector/cobrowse-connector/test/procs"
)

func main() {
	nodes := flag.Int("nodes", 3, "cluster size")
	serverURL := flag.Bool("server-url", false, "URL stickiness (Get Session returns sessionServerUrl); false: cookie stickiness through the front")
	connectTimeout := flag.Duration("connect-timeout", time.Second, "Bayeux advice timeout (how long /meta/connect is held)")
	maxInterval := flag.Duration("max-interval", 3*time.Second, "Bayeux session expiry after the last connect reply")
	logPath := flag.String("log", "", "debug log file (JSON lines); empty: no log")
	flag.Parse()

	log := slog.New(slog.DiscardHandler)
	if *logPath != "" {
		f, err := os.OpenFile(*logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			fmt.Fprintf(os.Stderr, "gcbserver: %v\n", err)
			os.Exit(1)
		}
		defer f.Close()
		log = slog.New(slog.NewJSONHandler(f, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	c := gcbtest.NewCluster(gcbtest.Options{
		Nodes:          *nodes,
		ServerURL:      *serverURL,
		ConnectTimeout: *connectTimeout,
		MaxInterval:    *maxInterval,
		Logger:         log,
	})
	defer c.Close()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintf(os.Stderr, "gcbserver: control listen: %v\n", err)
		os.Exit(1)
	}
	api := &api{c: c, log: log}
	srv := &http.Server{Handler: api.mux(), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	ready := control.Ready{Front: c.URL(), Control: "http://" + ln.Addr().String()}
	for _, n := range c.Nodes() {
		ready.Nodes = append(ready.Nodes, nodeOf(n))
	}
	b, _ := json.Marshal(ready)
	fmt.Println(string(b))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	select {
	case <-ctx.Done():
	case err := <-served:
		fmt.Fprintf(os.Stderr, "gcbserver: control API stopped: %v\n", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
}

type api struct {
	c   *gcbtest.Cluster
	log *slog.Logger
	rr  atomic.Uint64
}

func (a *api) mux() *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("POST /sessions", a.create)
	m.HandleFunc("GET /sessions", a.sessions)
	m.HandleFunc("GET /sessions/{token}", a.withSession(func(*gcbtest.Session) error { return nil }))
	m.HandleFunc("POST /sessions/{token}/agent-join", a.agentJoin)
	m.HandleFunc("POST /sessions/{token}/agent-exit", a.exit((*gcbtest.Session).AgentExit))
	m.HandleFunc("POST /sessions/{token}/customer-exit", a.exit((*gcbtest.Session).CustomerExit))
	m.HandleFunc("GET /nodes", a.nodes)
	m.HandleFunc("POST /nodes/{name}/kill", a.kill)
	m.HandleFunc("POST /nodes/{name}/restart", a.restart)
	return m
}

func reply(w http.ResponseWriter, status int, v any) { procs.ReplyJSON(w, status, v) }

func fail(w http.ResponseWriter, status int, err error) {
	reply(w, status, control.Error{Error: err.Error()})
}

func nodeOf(n *gcbtest.Node) control.Node {
	return control.Node{Name: n.Name(), URL: n.URL(), Up: n.Stats().Up}
}

func sessionOf(s *gcbtest.Session) control.Session {
	out := control.Session{
		Token:     s.Token(),
		HistoryID: s.HistoryID(),
		Node:      s.Node().Name(),
		State:     s.State().String(),
		EndedBy:   s.EndedBy(),
		Users:     []control.User{},
	}
	out.Live = out.State != gcbtest.StateEnded.String()
	for _, u := range s.Users() {
		out.Users = append(out.Users, control.User{ID: u.ID, Role: u.Role, Name: u.Name})
	}
	return out
}

// create makes a session on the named node, or on the next live node in turn: the harness
// keeps creating sessions while a node is down, as customers would.
func (a *api) create(w http.ResponseWriter, r *http.Request) {
	var req control.CreateRequest
	if r.ContentLength != 0 {
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			fail(w, http.StatusBadRequest, err)
			return
		}
	}
	nodes := a.c.Nodes()
	if req.Node != "" {
		for i, n := range nodes {
			if n.Name() == req.Node {
				a.createOn(w, i)
				return
			}
		}
		fail(w, http.StatusNotFound, fmt.Errorf("no node %q", req.Node))
		return
	}
	start := int(a.rr.Add(1) - 1)
	for k := range nodes {
		i := (start + k) % len(nodes)
		s, err := a.c.CreateSession(i)
		if errors.Is(err, gcbtest.ErrNodeDown) {
			continue
		}
		if err != nil {
			fail(w, http.StatusInternalServerError, err)
			return
		}
		reply(w, http.StatusOK, sessionOf(s))
		return
	}
	fail(w, http.StatusServiceUnavailable, errors.New("no node is up"))
}

func (a *api) createOn(w http.ResponseWriter, i int) {
	s, err := a.c.CreateSession(i)
	if errors.Is(err, gcbtest.ErrNodeDown) {
		fail(w, http.StatusServiceUnavailable, err)
		return
	}
	if err != nil {
		fail(w, http.StatusInternalServerError, err)
		return
	}
	reply(w, http.StatusOK, sessionOf(s))
}

func (a *api) sessions(w http.ResponseWriter, _ *http.Request) {
	all := a.c.Sessions()
	out := make([]control.Session, 0, len(all))
	for _, s := range all {
		out = append(out, sessionOf(s))
	}
	reply(w, http.StatusOK, out)
}

// withSession runs do on the named session and answers its state after; the refusals the
// scenario can meet (ended, not present, busy) are 409.
func (a *api) withSession(do func(*gcbtest.Session) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := a.c.Session(r.PathValue("token"))
		if s == nil {
			fail(w, http.StatusNotFound, errors.New("unknown session"))
			return
		}
		if err := do(s); err != nil {
			fail(w, http.StatusConflict, err)
			return
		}
		reply(w, http.StatusOK, sessionOf(s))
	}
}

// exit plays a participant leaving and answers the session just before (who was there to see
// it) and after. The two reads are not atomic with the exit: a Controller joining in between is
// not seen in Before.
func (a *api) exit(do func(*gcbtest.Session) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := a.c.Session(r.PathValue("token"))
		if s == nil {
			fail(w, http.StatusNotFound, errors.New("unknown session"))
			return
		}
		before := sessionOf(s)
		if err := do(s); err != nil {
			fail(w, http.StatusConflict, err)
			return
		}
		reply(w, http.StatusOK, control.ExitResult{Before: before, After: sessionOf(s)})
	}
}

func (a *api) agentJoin(w http.ResponseWriter, r *http.Request) {
	var req control.AgentRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		fail(w, http.StatusBadRequest, err)
		return
	}
	a.withSession(func(s *gcbtest.Session) error { return s.AgentJoin(req.AgentID, req.Name) })(w, r)
}

func (a *api) nodes(w http.ResponseWriter, _ *http.Request) {
	var out []control.Node
	for _, n := range a.c.Nodes() {
		out = append(out, nodeOf(n))
	}
	reply(w, http.StatusOK, out)
}

// kill kills a node and names the sessions the kill ended: those whose EndedBy is "node" now
// and was not before (Kill ends the node's live sessions under the cluster's lock, and no
// session can be created on a dead node).
func (a *api) kill(w http.ResponseWriter, r *http.Request) {
	n := a.c.Node(r.PathValue("name"))
	if n == nil {
		fail(w, http.StatusNotFound, errors.New("unknown node"))
		return
	}
	before := make(map[string]bool)
	for _, s := range a.c.Sessions() {
		if s.Node() == n && s.EndedBy() == gcbtest.EndedByNode {
			before[s.Token()] = true
		}
	}
	n.Kill()
	res := control.KillResult{Node: n.Name(), Ended: []string{}}
	for _, s := range a.c.Sessions() {
		if s.Node() == n && s.EndedBy() == gcbtest.EndedByNode && !before[s.Token()] {
			res.Ended = append(res.Ended, s.Token())
		}
	}
	a.log.Info("control: node killed", "node", n.Name(), "sessions_ended", len(res.Ended))
	reply(w, http.StatusOK, res)
}

func (a *api) restart(w http.ResponseWriter, r *http.Request) {
	n := a.c.Node(r.PathValue("name"))
	if n == nil {
		fail(w, http.StatusNotFound, errors.New("unknown node"))
		return
	}
	n.Restart()
	if !n.Stats().Up {
		fail(w, http.StatusInternalServerError, errors.New("node did not come back (see the gcbserver log)"))
		return
	}
	a.log.Info("control: node restarted", "node", n.Name())
	reply(w, http.StatusOK, nodeOf(n))
}
