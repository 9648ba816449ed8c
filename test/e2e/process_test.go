package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	yaml "go.yaml.in/yaml/v3"

	"github.com/cobrowse-connector/cobrowse-connector/chat"
	"github.com/cobrowse-connector/cobrowse-connector/configs"
	"github.com/cobrowse-connector/cobrowse-connector/connector/gcb/gcbtest"
	"github.com/cobrowse-connector/cobrowse-connector/test/logtest"
)

// The daemon binary, built once per test run for the tests where the daemon must be a process of
// its own (a SIGKILL is the point).
var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func daemonBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "cobrowse-e2e-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "cobrowse-connector")
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/cobrowse-connector/cobrowse-connector/cmd/cobrowse-connector").CombinedOutput()
		if err != nil {
			buildErr = err
			binPath = string(out)
		}
	})
	if buildErr != nil {
		t.Fatalf("building the daemon: %v\n%s", buildErr, binPath)
	}
	return binPath
}

// proc is the daemon running as a process of its own, its JSON log collected.
type proc struct {
	name   string // the cluster member it runs as ("" for the default)
	cmd    *exec.Cmd
	logs   *logtest.Buffer
	done   chan struct{}
	exited chan error // the process's exit, once
}

// startProcess runs `cobrowse-connector run` with e.cfg and waits until it consumes.
func (e *env) startProcess() *proc {
	e.t.Helper()
	p := e.launchProcess(e.cfg)
	if !p.logs.WaitFor("cobrowse-connector running", wait, p.exited) {
		e.t.Fatalf("daemon process not ready:\n%s", p.logs.Tail(4000))
	}
	e.watchOnce()
	return p
}

// writeConfig writes cfg (JSON logs at debug) to a file of the test's and returns its path.
func (e *env) writeConfig(cfg configs.Config) string {
	e.t.Helper()
	cfg.Log.Format, cfg.Log.Level = "json", "debug"
	b, err := yaml.Marshal(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	f, err := os.CreateTemp(e.t.TempDir(), "config-*.yaml")
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		e.t.Fatal(err)
	}
	return f.Name()
}

// launchProcess starts `cobrowse-connector run` with cfg, without waiting for it.
func (e *env) launchProcess(cfg configs.Config) *proc {
	e.t.Helper()
	path := e.writeConfig(cfg)
	p := &proc{name: cfg.Cluster.Member, logs: &logtest.Buffer{}, done: make(chan struct{}), exited: make(chan error, 1)}
	p.cmd = exec.Command(daemonBinary(e.t), "run", "--config", path)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	// No COBROWSE_* from the test's environment; the secrets (masked in the file) as a
	// deployment passes them.
	p.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, secretEnv(cfg)...)
	if err := p.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	go func() { p.exited <- p.cmd.Wait(); close(p.done) }()
	e.t.Cleanup(func() { p.kill(); _, _ = e.logs.Write([]byte(p.logs.String())) })
	e.procs = append(e.procs, p)
	return p
}

// secretEnv is the config's secrets as environment variables: the config file holds them masked.
func secretEnv(cfg configs.Config) []string {
	var env []string
	for name, v := range map[string]configs.Secret{
		"COBROWSE_ZOOM_SDK_SECRET":                            cfg.Zoom.SDKSecret,
		"COBROWSE_ZOOM_CLIENT_SECRET":                         cfg.Zoom.ClientSecret,
		"COBROWSE_ZOOM_WEBHOOK_SECRET":                        cfg.Zoom.Webhook.Secret,
		"COBROWSE_ZOOM_WEBHOOK_PREVIOUS_SECRET":               cfg.Zoom.Webhook.PreviousSecret,
		"COBROWSE_ZOOM_TOKEN_ENDPOINT_BEARER_SECRET":          cfg.Zoom.TokenEndpoint.BearerSecret,
		"COBROWSE_ZOOM_TOKEN_ENDPOINT_PREVIOUS_BEARER_SECRET": cfg.Zoom.TokenEndpoint.PreviousBearerSecret,
		"COBROWSE_CEC_APP_SECRET":                             cfg.CEC.AppSecret,
		"COBROWSE_NATS_PASSWORD":                              cfg.NATS.Password,
		"COBROWSE_NATS_TOKEN":                                 cfg.NATS.Token,
	} {
		if v.Reveal() != "" {
			env = append(env, name+"="+v.Reveal())
		}
	}
	return env
}

// kill sends SIGKILL and reaps the process.
func (p *proc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// count returns how many log lines hold substr.
func (p *proc) count(substr string) int { return strings.Count(p.logs.String(), substr) }

// TestSIGKILLWithLiveSessions: the real daemon process is killed with SIGKILL while sessions are
// live, idle and active, and started again at once, while the server still holds the old
// Controller of each. Every session is re-joined (none ends at the restart), an agent who joins
// afterwards is reported, the attach seq goes on, and a close stops the session over CometD, which
// only a Controller that joined again can do.
func TestSIGKILLWithLiveSessions(t *testing.T) {
	e := newEnv(t, gcbtest.Options{}, nil) // MaxInterval 3s: the old Controller is held about that long
	p := e.startProcess()
	const n = 4
	iids := []string{"i-1", "i-2", "i-3", "i-4"}
	sessions := make([]*gcbtest.Session, n)
	for i, iid := range iids {
		agent := "agent-" + iid
		e.event(iid, chat.EventCreated, agent)
		sessions[i] = e.joinSession(iid, agent, 1)
		if i%2 == 0 {
			e.activate(iid, sessions[i], agent)
		}
	}
	p.kill()
	for i, s := range sessions {
		if s.State() == gcbtest.StateEnded || !hasController(s) {
			t.Fatalf("%s after SIGKILL: state %v, users %+v; the server should still hold the old Controller", iids[i], s.State(), s.Users())
		}
	}

	p2 := e.startProcess()
	if !p2.logs.WaitFor(`"msg":"recovering live sessions"`, wait, nil) {
		t.Fatal("the restarted daemon recovers nothing")
	}
	e.waitUntil("every session re-joined", func() bool { return p2.count(`"msg":"re-joined a live session"`) == n })
	if p2.count("controller already joined") == 0 {
		t.Fatal("no re-join was refused: the old Controllers expired before the restart, so the test proved nothing")
	}
	for i, iid := range iids {
		agent := "agent-" + iid
		if i%2 == 1 {
			e.activate(iid, sessions[i], agent) // needs the new Controller's membership to be seen
		}
		e.event(iid, chat.EventClosed, "")
		final := e.expectEnd(iid, "interaction_closed")
		if final.Seq != 3 || final.Data.StartTime == "" {
			t.Fatalf("%s final attach %+v: want seq 3 with a start time", iid, final)
		}
		e.waitEnded(sessions[i])
		if by := sessions[i].EndedBy(); by != gcbtest.EndedByController {
			t.Fatalf("%s ended by %q, want a CometD stop by the re-joined Controller", iid, by)
		}
	}
	for _, iid := range iids {
		for _, m := range e.outbound(iid) {
			if strings.Contains(string(m.data), "server_lost") {
				t.Fatalf("%s: %s %s", iid, m.subject, m.data)
			}
		}
	}
}

func hasController(s *gcbtest.Session) bool {
	for _, u := range s.Users() {
		if u.Role == 3 {
			return true
		}
	}
	return false
}
