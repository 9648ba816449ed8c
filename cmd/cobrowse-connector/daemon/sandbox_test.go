package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/cobrowse-connector/cobrowse-connector/attach"
	"github.com/cobrowse-connector/cobrowse-connector/configs"
	"github.com/cobrowse-connector/cobrowse-connector/connector"
	"github.com/cobrowse-connector/cobrowse-connector/test/logtest"
)

// TestSandbox starts the sandbox, runs the real daemon with the environment of the command it
// printed, and follows each printed walk-through as a person would, command by command (the nats
// CLI's publishes done with nats.go, curl's requests with net/http): every session is joined,
// activated and ended, as the attached data says. The printed command and examples are what is
// tested, not a copy of them.
func TestSandbox(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	out := &logtest.Buffer{}
	ready := make(chan struct{})
	sandboxDone := make(chan error, 1)
	sbCtx, stopSandbox := context.WithCancel(ctx)
	go func() { sandboxDone <- Sandbox(sbCtx, out, SandboxOptions{Ready: func() { close(ready) }}) }()
	t.Cleanup(func() {
		stopSandbox()
		if err := <-sandboxDone; err != nil {
			t.Errorf("sandbox: %v", err)
		}
	})
	select {
	case <-ready:
	case err := <-sandboxDone:
		t.Fatalf("sandbox: %v\n%s", err, out.String())
	case <-ctx.Done():
		t.Fatal("the sandbox did not start")
	}
	printed := out.String()

	env := printedEnv(t, printed)
	for name, value := range env {
		t.Setenv(name, value)
	}
	cfg, err := configs.Load("")
	if err != nil {
		t.Fatalf("the printed command's config: %v\n%s", err, printed)
	}
	logs := &logtest.Buffer{}
	runCtx, stopDaemon := context.WithCancel(ctx)
	daemonReady := make(chan struct{})
	daemonDone := make(chan error, 1)
	go func() {
		daemonDone <- Run(runCtx, cfg, Options{Logger: slog.New(slog.NewTextHandler(logs, nil)), Ready: func(string) { close(daemonReady) }})
	}()
	t.Cleanup(func() {
		stopDaemon()
		if err := <-daemonDone; err != nil {
			t.Errorf("daemon: %v", err)
		}
	})
	select {
	case <-daemonReady:
	case err := <-daemonDone:
		t.Fatalf("daemon: %v", err)
	case <-ctx.Done():
		t.Fatal("the daemon did not start")
	}

	nc, err := nats.Connect(env["COBROWSE_NATS_URL"])
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	w := newWatcher(t, nc)

	walks := printedWalks(t, printed)
	if len(walks) != 3 {
		t.Fatalf("%d walk-throughs printed, want one per vendor:\n%s", len(walks), printed)
	}
	// What a person watching `nats sub 'cc.>'` waits for after each step, by vendor.
	waits := map[string][]func(ctx context.Context, id string) error{
		"Genesys Co-browse": {nil, w.attachAndView(1), w.attach(2, "Yes"), w.attach(3, "No")},
		"Zoom Cobrowse":     {nil, nil, w.attachAndView(1), w.attach(2, "Yes"), w.attach(3, "No")},
		"Huawei CEC":        {nil, w.pages, nil, w.attach(2, "Yes"), w.attach(3, "No")},
	}
	for _, walk := range walks {
		t.Run(walk.vendor, func(t *testing.T) {
			wait := waits[walk.vendor]
			if len(walk.commands) != len(wait) {
				t.Fatalf("%d commands, want %d: %q", len(walk.commands), len(wait), walk.commands)
			}
			var pin string
			for i, command := range walk.commands {
				command = strings.ReplaceAll(command, "{start:PIN}", "{start:"+pin+"}")
				reply, err := execute(ctx, nc, command)
				if err != nil {
					t.Fatalf("%s: %v\n%s\ndaemon's logs:\n%s", command, err, out.String(), logs.Tail(30))
				}
				if p, ok := reply["pin"]; ok {
					pin = p
				}
				if wait[i] != nil {
					if err := wait[i](ctx, walk.interaction); err != nil {
						t.Fatalf("after %s: %v\n%s\ndaemon's logs:\n%s", command, err, out.String(), logs.Tail(30))
					}
				}
			}
		})
	}
	// The page's note follows its end call, which the final attach may overtake.
	if !out.WaitFor("ends Zoom session", 10*time.Second, nil) {
		t.Errorf("the sandbox's customer page did not end the Zoom session:\n%s", out.String())
	}
}

// TestParseSandboxVendors: --vendor takes all or a list of known vendors.
func TestParseSandboxVendors(t *testing.T) {
	for in, want := range map[string]string{"": "genesys,zoom,cec", "all": "genesys,zoom,cec", "zoom": "zoom", " cec , genesys,cec": "cec,genesys"} {
		got, err := ParseSandboxVendors(in)
		var names []string
		for _, v := range got {
			names = append(names, string(v))
		}
		if err != nil || strings.Join(names, ",") != want {
			t.Errorf("%q: %v, %v; want %s", in, names, err, want)
		}
	}
	for _, in := range []string{"genesis", "zoom,,cec", "all,zoom"} {
		if _, err := ParseSandboxVendors(in); err == nil {
			t.Errorf("%q: accepted", in)
		}
	}
}

// TestSandboxOneVendor: with one vendor, the command enables it alone and names no default.
func TestSandboxOneVendor(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	out := &logtest.Buffer{}
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- Sandbox(ctx, out, SandboxOptions{Vendors: []connector.Vendor{connector.CEC}, Ready: func() { close(ready) }})
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("sandbox: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	env := printedEnv(t, out.String())
	if env["COBROWSE_CEC_ENABLED"] != "true" || env["COBROWSE_GENESYS_URL"] != "" || env["COBROWSE_ZOOM_ENABLED"] != "" || env["COBROWSE_VENDORS_DEFAULT"] != "" {
		t.Fatalf("env %v", env)
	}
	if walks := printedWalks(t, out.String()); len(walks) != 1 || walks[0].vendor != "Huawei CEC" {
		t.Fatalf("walks %+v", walks)
	}
}

// printedEnv reads the variables of the printed run command.
func printedEnv(t *testing.T, printed string) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^(COBROWSE_[A-Z0-9_]+)=(.*) \\$`).FindAllStringSubmatch(printed, -1) {
		words, err := shellWords(m[2])
		if err != nil || len(words) != 1 {
			t.Fatalf("%s: value %q: %v", m[1], m[2], err)
		}
		env[m[1]] = words[0]
	}
	if !regexp.MustCompile(`(?m)\\\ncobrowse-connector run\n`).MatchString(printed) || env["COBROWSE_NATS_URL"] == "" {
		t.Fatalf("no run command printed:\n%s", printed)
	}
	return env
}

type walk struct {
	vendor, interaction string
	commands            []string
}

// printedWalks reads the printed walk-throughs: a title line, then comment and command lines.
func printedWalks(t *testing.T, printed string) []walk {
	t.Helper()
	title := regexp.MustCompile(`^(.+), interaction (\S+):$`)
	var walks []walk
	for line := range strings.Lines(printed) {
		line = strings.TrimRight(line, "\n")
		if m := title.FindStringSubmatch(line); m != nil {
			walks = append(walks, walk{vendor: m[1], interaction: m[2]})
			continue
		}
		if len(walks) == 0 || !strings.HasPrefix(line, "  ") || strings.HasPrefix(line, "  #") {
			continue
		}
		cur := &walks[len(walks)-1]
		cur.commands = append(cur.commands, strings.TrimSpace(line))
	}
	return walks
}

// execute runs one printed command: `nats --server URL pub SUBJECT PAYLOAD` or `curl -s -X POST
// URL`. A curl's JSON answer is returned.
func execute(ctx context.Context, nc *nats.Conn, command string) (map[string]string, error) {
	words, err := shellWords(command)
	if err != nil {
		return nil, err
	}
	switch {
	case len(words) == 6 && words[0] == "nats" && words[1] == "--server" && words[3] == "pub":
		if words[2] != nc.ConnectedUrl() {
			return nil, fmt.Errorf("server %s, want %s", words[2], nc.ConnectedUrl())
		}
		if !json.Valid([]byte(words[5])) {
			return nil, errors.New("the payload is not JSON")
		}
		if err := nc.Publish(words[4], []byte(words[5])); err != nil {
			return nil, err
		}
		return nil, nc.FlushWithContext(ctx)
	case len(words) == 5 && words[0] == "curl" && words[1] == "-s" && words[2] == "-X":
		req, err := http.NewRequestWithContext(ctx, words[3], words[4], nil)
		if err != nil {
			return nil, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("%s: %s", resp.Status, body)
		}
		var reply map[string]string
		return reply, json.Unmarshal(body, &reply)
	}
	return nil, errors.New("not a command the sandbox prints")
}

// shellWords splits a command line as a POSIX shell does, for the quoting shellQuote writes:
// words separated by spaces, single-quoted parts, and '\” for a quote inside them.
func shellWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	in, inWord := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case in && c == '\'':
			in = false
		case in:
			cur.WriteByte(c)
		case c == '\'':
			in, inWord = true, true
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			inWord = true
		case c == ' ':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if in {
		return nil, errors.New("unterminated quote")
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

func TestShellQuoteRoundTrip(t *testing.T) {
	for _, s := range []string{"plain", "nats://127.0.0.1:4222", `{"a":"it's"}`, "a b", "", "x'y'z"} {
		words, err := shellWords(shellQuote(s))
		if err != nil || len(words) != 1 || words[0] != s {
			t.Errorf("%q -> %q -> %q, %v", s, shellQuote(s), words, err)
		}
	}
}

// watcher holds what crossed NATS on the contract's subjects, as `nats sub 'cc.>'` shows it.
type watcher struct {
	mu      sync.Mutex
	msgs    []*nats.Msg
	changed chan struct{}
}

func newWatcher(t *testing.T, nc *nats.Conn) *watcher {
	w := &watcher{changed: make(chan struct{})}
	if _, err := nc.Subscribe("cc.>", func(m *nats.Msg) {
		w.mu.Lock()
		w.msgs = append(w.msgs, m)
		close(w.changed)
		w.changed = make(chan struct{})
		w.mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return w
}

// until waits for cond over the messages seen, within 30s.
func (w *watcher) until(ctx context.Context, what string, cond func([]*nats.Msg) bool) error {
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	for {
		w.mu.Lock()
		ok, changed := cond(w.msgs), w.changed
		w.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-changed:
		case <-deadline.C:
			return fmt.Errorf("no %s within 30s", what)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (w *watcher) hasAttach(msgs []*nats.Msg, id string, seq int, associated string) bool {
	for _, m := range msgs {
		var u attach.Update
		if m.Subject == attach.UpdateSubject("cc", id) && json.Unmarshal(m.Data, &u) == nil && u.Seq == uint64(seq) {
			return u.Data.Associated == associated
		}
	}
	return false
}

func (w *watcher) hasPage(msgs []*nats.Msg, subject string, kind attach.HandoffKind, id string) bool {
	for _, m := range msgs {
		var h attach.Handoff
		if m.Subject == subject && json.Unmarshal(m.Data, &h) == nil && h.Kind == kind && h.InteractionID == id {
			return true
		}
	}
	return false
}

// attach waits for the interaction's attach seq, with CoBrowseAssociated.
func (w *watcher) attach(seq int, associated string) func(context.Context, string) error {
	return func(ctx context.Context, id string) error {
		return w.until(ctx, fmt.Sprintf("attach #%d (%s)", seq, associated), func(msgs []*nats.Msg) bool {
			return w.hasAttach(msgs, id, seq, associated)
		})
	}
}

// attachAndView waits for the attach seq (CoBrowseAssociated=Yes) and the agent's view.
func (w *watcher) attachAndView(seq int) func(context.Context, string) error {
	return func(ctx context.Context, id string) error {
		return w.until(ctx, "attach and agent view", func(msgs []*nats.Msg) bool {
			return w.hasAttach(msgs, id, seq, "Yes") && w.hasPage(msgs, attach.AgentSubject("cc", sandboxAgent), attach.HandoffView, id)
		})
	}
}

// pages waits for both pages' messages of a session the daemon created.
func (w *watcher) pages(ctx context.Context, id string) error {
	return w.until(ctx, "page messages", func(msgs []*nats.Msg) bool {
		return w.hasPage(msgs, attach.AgentSubject("cc", sandboxAgent), attach.HandoffView, id) &&
			w.hasPage(msgs, attach.CustomerSubject("cc", id), attach.HandoffStart, id)
	})
}

// FuzzParseSandboxVendors: --vendor never panics, and what it accepts is a list of known vendors
// without repeats.
func FuzzParseSandboxVendors(f *testing.F) {
	for _, s := range []string{"", "all", "zoom", "genesys,zoom,cec", " cec , genesys,cec", "genesis", ",", "all,zoom"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		vs, err := ParseSandboxVendors(s)
		if err != nil {
			return
		}
		if len(vs) == 0 {
			t.Fatalf("%q: accepted with no vendor", s)
		}
		seen := map[connector.Vendor]bool{}
		for _, v := range vs {
			if seen[v] || (v != connector.Genesys && v != connector.Zoom && v != connector.CEC) {
				t.Fatalf("%q: %v", s, vs)
			}
			seen[v] = true
		}
	})
}
