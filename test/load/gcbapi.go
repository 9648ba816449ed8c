package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/test/procs"
)

// The control API of the harness's Co-browse Server process (gcbMain), on loopback:
//
//	POST /create     {"n":K} -> {"sessions":[sessionInfo...]}: K live idle sessions, the customer present
//	POST /agent-join {"joins":[{"token","agentId"}...]} -> {"joined":n,"failed":[...]}
//	POST /wait       {"tokens":[...],"for":"controller"|"ended","timeoutMs":N,"detail":bool} -> waitResponse
//	GET  /stats      -> statsResponse
//
// The harness plays the customer (create) and the agent (agent-join) through it, and learns from
// it when the server saw the Controller join or a session end. It is batched: 10,000 sessions are
// a handful of calls.

// gcbReady is the one JSON line the process writes on stdout once it serves.
type gcbReady struct {
	Front   string `json:"front"`   // the cluster URL: the daemon's genesys.url
	Control string `json:"control"` // the control API's base URL
}

// sessionInfo is a co-browse session as the server sees it; the times are the server's, in Unix
// nanoseconds (0: not yet).
type sessionInfo struct {
	Token          string `json:"token"`
	HistoryID      string `json:"historyId"`
	Node           string `json:"node"`
	State          string `json:"state"`
	EndedBy        string `json:"endedBy,omitempty"`
	ActivationNs   int64  `json:"activationNs,omitempty"`
	DeactivationNs int64  `json:"deactivationNs,omitempty"`
	Controller     bool   `json:"controller"` // a Controller is present
}

type createRequest struct {
	N int `json:"n"`
}

type createResponse struct {
	Sessions []sessionInfo `json:"sessions"`
}

type agentJoin struct {
	Token   string `json:"token"`
	AgentID string `json:"agentId"`
}

type agentRequest struct {
	Joins []agentJoin `json:"joins"`
}

type agentResponse struct {
	Joined int      `json:"joined"`
	Failed []string `json:"failed,omitempty"`
}

const (
	waitController = "controller"
	waitEnded      = "ended"
)

type waitRequest struct {
	Tokens    []string `json:"tokens"`
	For       string   `json:"for"`
	TimeoutMs int64    `json:"timeoutMs"`
	Detail    bool     `json:"detail,omitempty"`
}

type waitResponse struct {
	Done     int           `json:"done"`
	NotDone  int           `json:"notDone"`
	Pending  []string      `json:"pending,omitempty"` // the first few not done
	Unknown  []string      `json:"unknown,omitempty"` // tokens the server does not remember
	Sessions []sessionInfo `json:"sessions,omitempty"`
}

type nodeStats struct {
	Name             string `json:"name"`
	Up               bool   `json:"up"`
	Handshakes       int64  `json:"handshakes"`
	WebSocketConns   int64  `json:"websocketConns"`
	LongPollRequests int64  `json:"longPollRequests"`
	BayeuxSessions   int    `json:"bayeuxSessions"`
	HeldConnects     int    `json:"heldConnects"`
}

type statsResponse struct {
	Live       int         `json:"live"`
	Remembered int         `json:"remembered"` // live and ended sessions the cluster remembers
	Nodes      []nodeStats `json:"nodes"`
}

// websocketConns sums the websocket connections the nodes accepted.
func (s statsResponse) websocketConns() int64 {
	var n int64
	for _, x := range s.Nodes {
		n += x.WebSocketConns
	}
	return n
}

// longPollRequests sums the long-polling requests the nodes served.
func (s statsResponse) longPollRequests() int64 {
	var n int64
	for _, x := range s.Nodes {
		n += x.LongPollRequests
	}
	return n
}

type apiError struct {
	Error string `json:"error"`
}

// gcbClient calls the control API.
type gcbClient struct {
	base string
	http *http.Client
}

func newGCBClient(base string) *gcbClient {
	return &gcbClient{base: base, http: &http.Client{}}
}

// call is one request, bounded by bound on top of ctx.
func (c *gcbClient) call(ctx context.Context, bound time.Duration, method, path string, in, out any) error {
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	status, b, err := procs.CallJSON(ctx, c.http, method, c.base+path, in, 256<<20)
	if err != nil {
		return fmt.Errorf("gcb control %s: %w", path, err)
	}
	if status != http.StatusOK {
		var e apiError
		_ = json.Unmarshal(b, &e)
		return fmt.Errorf("gcb control %s: HTTP %d: %s", path, status, e.Error)
	}
	return json.Unmarshal(b, out)
}

// create makes n live idle sessions, in batches.
func (c *gcbClient) create(ctx context.Context, n int) ([]sessionInfo, error) {
	out := make([]sessionInfo, 0, n)
	for len(out) < n {
		k := min(n-len(out), 2000)
		var r createResponse
		if err := c.call(ctx, 60*time.Second, http.MethodPost, "/create", createRequest{N: k}, &r); err != nil {
			return nil, err
		}
		if len(r.Sessions) != k {
			return nil, fmt.Errorf("gcb control /create: asked for %d sessions, got %d", k, len(r.Sessions))
		}
		out = append(out, r.Sessions...)
	}
	return out, nil
}

func (c *gcbClient) agentJoin(ctx context.Context, joins []agentJoin) (agentResponse, error) {
	var r agentResponse
	err := c.call(ctx, 60*time.Second, http.MethodPost, "/agent-join", agentRequest{Joins: joins}, &r)
	return r, err
}

// wait waits up to bound until every token is done (see gcbAPI.wait).
func (c *gcbClient) wait(ctx context.Context, tokens []string, what string, bound time.Duration, detail bool) (waitResponse, error) {
	var r waitResponse
	err := c.call(ctx, bound+30*time.Second, http.MethodPost, "/wait",
		waitRequest{Tokens: tokens, For: what, TimeoutMs: bound.Milliseconds(), Detail: detail}, &r)
	return r, err
}

func (c *gcbClient) stats(ctx context.Context) (statsResponse, error) {
	var r statsResponse
	err := c.call(ctx, 30*time.Second, http.MethodGet, "/stats", nil, &r)
	return r, err
}
