package interop

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector/gcb/gcbtest"
	"github.com/cobrowse-connector/cobrowse-connector/test/nodepeer"
)

// gcbJSWait bounds every wait on the JS client; nothing waits for it unless something is broken.
const gcbJSWait = 15 * time.Second

// TestGCBTestOfficialJSClient runs the official CometD JavaScript client (cometd 9 with
// cometd-nodejs-client 2) as a Genesys Controller against gcbtest: handshake, connect, a
// remoteCall to /service/session/join (role 3), then the joined and activated notifications
// when the agent joins, a remoteCall to /service/session/stop, the deactivated notification
// and a disconnect; over long-polling and websocket, through the front with the
// gcbSessionServer cookie (cookie stickiness) and straight to the node's URL (URL stickiness).
func TestGCBTestOfficialJSClient(t *testing.T) {
	nodepeer.Require(t)
	for _, tc := range []struct {
		name      string
		transport string
		viaFront  bool
	}{
		{"long-polling/front-cookie", "long-polling", true},
		{"long-polling/node-url", "long-polling", false},
		{"websocket/front-cookie", "websocket", true},
		{"websocket/node-url", "websocket", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := gcbtest.NewCluster(gcbtest.Options{Nodes: 2, ServerURL: !tc.viaFront, ConnectTimeout: 500 * time.Millisecond, MaxInterval: 3 * time.Second})
			t.Cleanup(c.Close)
			// The session lives on node-2: without stickiness the front's round-robin would send
			// every other request to node-1, which does not know the client.
			s, err := c.CreateSession(1)
			if err != nil {
				t.Fatal(err)
			}
			node := s.Node()
			before := node.Stats()
			args := []string{"--transport", tc.transport, "--token", s.Token(), "--name", "agent-js"}
			if tc.viaFront {
				args = append(args, "--url", c.URL()+"/cometd", "--cookie", gcbtest.StickyCookie+"="+node.Name())
			} else {
				args = append(args, "--url", node.URL()+"/cometd")
			}
			p := nodepeer.Start(t, "jsclient.mjs", args...)

			var hs struct{ Transport, ClientID string }
			gcbDecode(t, p.Expect(t, "HANDSHAKE ", gcbJSWait), &hs)
			if hs.Transport != tc.transport {
				t.Fatalf("the JS client handshook with %q, want %q", hs.Transport, tc.transport)
			}
			var joined struct {
				UserToken        string
				UserID           int
				Users            []struct{ UserID string }
				SessionHistoryID string
			}
			gcbDecode(t, p.Expect(t, "JOINED ", gcbJSWait), &joined)
			if joined.UserToken == "" || joined.SessionHistoryID != s.HistoryID() || joined.UserID != 2 || len(joined.Users) != 1 {
				t.Fatalf("join result %+v, history id %s", joined, s.HistoryID())
			}
			if u := s.Users(); len(u) != 2 || u[1].Role != 3 || u[1].Name != "agent-js" {
				t.Fatalf("server-side users %v", u)
			}
			// Three held connects (about 1.5 s) outlast the client's maxNetworkDelay (1 s): had
			// a reply gone unmatched, the JS websocket transport would have closed its
			// connection by now ("Message Timeout") and opened another, which the node counts.
			p.Expect(t, "CONNECT 3", gcbJSWait)

			if err := s.AgentJoin("agent-js", "Bob"); err != nil {
				t.Fatal(err)
			}
			var note map[string]any
			gcbDecode(t, p.Expect(t, "NOTIFY /service/session/joined ", gcbJSWait), &note)
			if note["userId"] != "3" || note["role"] != float64(2) || note["name"] != "Bob" {
				t.Fatalf("joined %v", note)
			}
			act, _ := s.Times()
			gcbDecode(t, p.Expect(t, "NOTIFY /service/session/activated ", gcbJSWait), &note)
			if note["activationTime"] != float64(act.UnixMilli()) {
				t.Fatalf("activated %v, activation %v", note, act.UnixMilli())
			}
			// The script stops the session as soon as it is active. The stop's reply and the
			// deactivated notification travel separately (the publish's response and the
			// connect's, or two websocket frames): either may come first.
			lines := gcbExpectAll(t, p, "STOPPED ", "NOTIFY /service/session/deactivated ")
			gcbDecode(t, lines["NOTIFY /service/session/deactivated "], &note)
			_, deact := s.Times()
			if note["activationTime"] != float64(act.UnixMilli()) || note["deactivationTime"] != float64(deact.UnixMilli()) {
				t.Fatalf("deactivated %v", note)
			}
			if s.EndedBy() != gcbtest.EndedByController {
				t.Fatalf("ended by %q", s.EndedBy())
			}
			var disc struct {
				Transport  string
				Successful bool
			}
			gcbDecode(t, p.Expect(t, "DISCONNECTED ", gcbJSWait), &disc)
			if !disc.Successful || disc.Transport != tc.transport {
				t.Fatalf("disconnect %+v", disc)
			}
			if err := p.Wait(gcbJSWait); err != nil {
				t.Fatalf("the JS client exited with %v", err)
			}

			// Server-side evidence of the transport: websocket connections and long-polling
			// requests seen by the owning node, and nothing at all by the other one.
			after := node.Stats()
			ws, lp := after.WebSocketConns-before.WebSocketConns, after.LongPollRequests-before.LongPollRequests
			switch tc.transport {
			case "websocket":
				if ws != 1 || lp != 0 {
					t.Fatalf("websocket run: %d websocket connections, %d long-polling requests on %s", ws, lp, node.Name())
				}
			default:
				if ws != 0 || lp < 3 {
					t.Fatalf("long-polling run: %d websocket connections, %d long-polling requests on %s", ws, lp, node.Name())
				}
			}
			if other := c.Nodes()[0].Stats(); other.Handshakes != 0 || other.WebSocketConns != 0 || other.LongPollRequests != 0 {
				t.Fatalf("node-1 saw traffic: %+v", other)
			}
		})
	}
}

func gcbDecode(t *testing.T, line string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(line), v); err != nil {
		t.Fatalf("decode %q: %v", line, err)
	}
}

// gcbExpectAll reads the peer's lines until it has seen one starting with each prefix, in any
// order, and returns the rest of each.
func gcbExpectAll(t *testing.T, p *nodepeer.Peer, prefixes ...string) map[string]string {
	t.Helper()
	got := make(map[string]string)
	deadline := time.Now().Add(gcbJSWait)
	for len(got) < len(prefixes) {
		line := p.Expect(t, "", time.Until(deadline))
		for _, prefix := range prefixes {
			if rest, ok := strings.CutPrefix(line, prefix); ok {
				got[prefix] = rest
			}
		}
	}
	return got
}
