// Package control is the loopback HTTP API of the chaos harness's Co-browse Server process
// (test/chaos/gcbserver): the JSON types both sides share and the harness's client.
//
// The API exists because the harness must play the customer and the agent, and break nodes, in a
// process other than its own: the Co-browse cluster (gcbtest) lives in its own process so that
// the daemon reaches it only over the network, as it would reach a real cluster.
//
//	POST /sessions                     {"node":"node-2"} (or {} for the next live node) -> Session
//	GET  /sessions                     every session the cluster remembers -> []Session
//	GET  /sessions/{token}             -> Session
//	POST /sessions/{token}/agent-join  {"agentId":"agent-7"} -> Session
//	POST /sessions/{token}/agent-exit  -> ExitResult
//	POST /sessions/{token}/customer-exit -> ExitResult
//	GET  /nodes                        -> []Node
//	POST /nodes/{name}/kill            -> KillResult (the sessions the kill ended)
//	POST /nodes/{name}/restart         -> Node
//
// Errors are {"error":"..."} with a 4xx or 5xx status; a refusal the scenario expects (the
// session already ended, the agent already there) is 409.
package control

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/test/procs"
)

// Ready is the one JSON line the server process writes on stdout once it serves.
type Ready struct {
	Front   string `json:"front"`   // the cluster URL: what the daemon's genesys.url is
	Control string `json:"control"` // the base URL of this API
	Nodes   []Node `json:"nodes"`
}

// Node is one Co-browse node.
type Node struct {
	Name string `json:"name"`
	URL  string `json:"url"`
	Up   bool   `json:"up"`
}

// User is a participant present in a session.
type User struct {
	ID   string `json:"id"`
	Role int    `json:"role"` // 1 customer, 2 agent, 3 controller
	Name string `json:"name,omitempty"`
}

// Session is a co-browse session as the server sees it.
type Session struct {
	Token     string `json:"token"`
	HistoryID string `json:"historyId"`
	Node      string `json:"node"`
	Live      bool   `json:"live"`
	State     string `json:"state"`   // idle, active, ended
	EndedBy   string `json:"endedBy"` // "" while live; gcbtest's EndedBy values
	Users     []User `json:"users"`   // present now
}

// CreateRequest asks for a session on a node; an empty Node takes the next live node in turn.
type CreateRequest struct {
	Node string `json:"node,omitempty"`
}

// AgentRequest names the agent who joins.
type AgentRequest struct {
	AgentID string `json:"agentId"`
	Name    string `json:"name,omitempty"`
}

// ExitResult is a session just before and just after a participant left it: Before says which
// Controller (if any) was there to witness the exit.
type ExitResult struct {
	Before Session `json:"before"`
	After  Session `json:"after"`
}

// KillResult lists the tokens of the sessions the kill ended (those live on the node).
type KillResult struct {
	Node  string   `json:"node"`
	Ended []string `json:"ended"`
}

// Error is the body of a refusal.
type Error struct {
	Error string `json:"error"`
}

// Refused is returned by the client for a 409: the server refused what the scenario asked in a
// way the scenario may expect (session ended, agent busy or present).
type Refused struct{ Msg string }

func (r *Refused) Error() string { return "refused: " + r.Msg }

// Client calls the API.
type Client struct {
	Base string
	HTTP *http.Client
}

// NewClient returns a client with a per-call bound.
func NewClient(base string) *Client {
	return &Client{Base: base, HTTP: &http.Client{Timeout: 10 * time.Second}}
}

func (c *Client) call(ctx context.Context, method, path string, in, out any) error {
	status, b, err := procs.CallJSON(ctx, c.HTTP, method, c.Base+path, in, 64<<20)
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		var e Error
		_ = json.Unmarshal(b, &e)
		if status == http.StatusConflict {
			return &Refused{Msg: e.Error}
		}
		return fmt.Errorf("%s %s: HTTP %d: %s", method, path, status, e.Error)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// Create creates a live session with the customer present.
func (c *Client) Create(ctx context.Context, node string) (Session, error) {
	var s Session
	err := c.call(ctx, http.MethodPost, "/sessions", CreateRequest{Node: node}, &s)
	return s, err
}

// Sessions lists every session the server remembers.
func (c *Client) Sessions(ctx context.Context) ([]Session, error) {
	var out []Session
	err := c.call(ctx, http.MethodGet, "/sessions", nil, &out)
	return out, err
}

// Session returns one session.
func (c *Client) Session(ctx context.Context, token string) (Session, error) {
	var s Session
	err := c.call(ctx, http.MethodGet, "/sessions/"+url.PathEscape(token), nil, &s)
	return s, err
}

// AgentJoin plays the agent joining from the agent view.
func (c *Client) AgentJoin(ctx context.Context, token, agentID string) (Session, error) {
	var s Session
	err := c.call(ctx, http.MethodPost, "/sessions/"+url.PathEscape(token)+"/agent-join", AgentRequest{AgentID: agentID, Name: agentID}, &s)
	return s, err
}

// AgentExit plays the agent leaving: the session ends.
func (c *Client) AgentExit(ctx context.Context, token string) (ExitResult, error) {
	var r ExitResult
	err := c.call(ctx, http.MethodPost, "/sessions/"+url.PathEscape(token)+"/agent-exit", nil, &r)
	return r, err
}

// CustomerExit plays the customer leaving: the session ends.
func (c *Client) CustomerExit(ctx context.Context, token string) (ExitResult, error) {
	var r ExitResult
	err := c.call(ctx, http.MethodPost, "/sessions/"+url.PathEscape(token)+"/customer-exit", nil, &r)
	return r, err
}

// Controller returns the user id of the Controller present in s, or "".
func (s Session) Controller() string {
	for _, u := range s.Users {
		if u.Role == 3 {
			return u.ID
		}
	}
	return ""
}

// Nodes lists the nodes.
func (c *Client) Nodes(ctx context.Context) ([]Node, error) {
	var out []Node
	err := c.call(ctx, http.MethodGet, "/nodes", nil, &out)
	return out, err
}

// Kill kills a node; its live sessions end (EndedBy "node").
func (c *Client) Kill(ctx context.Context, node string) (KillResult, error) {
	var r KillResult
	err := c.call(ctx, http.MethodPost, "/nodes/"+url.PathEscape(node)+"/kill", nil, &r)
	return r, err
}

// Restart brings a node back, empty, on the same address.
func (c *Client) Restart(ctx context.Context, node string) (Node, error) {
	var n Node
	err := c.call(ctx, http.MethodPost, "/nodes/"+url.PathEscape(node)+"/restart", nil, &n)
	return n, err
}
