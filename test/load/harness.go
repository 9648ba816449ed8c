package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cobrowse-connector/cobrowse-connector/test/procs"
)

// The names the daemon uses by default (configs/default.yaml); the harness leaves them as they
// are and reads the daemon's consumer group by them.
const (
	prefix            = "cc"
	inboundStream     = "CC_INBOUND"
	defaultGroup      = "cobrowse"                         // cluster.group
	defaultPartitions = 16                                 // cluster.partitions
	groupStream       = inboundStream + "-" + defaultGroup // the consumer group's work queue: <nats.inbound.stream>-<cluster.group>
	defaultMember     = "main"                             // cluster.member
)

// harness owns the processes of every measurement and the work folder.
type harness struct {
	opt         options
	dir         string
	daemonBin   string
	profiledBin string // test/load/profiled, with -profile-daemon
	self        string // this program, started again as the helper processes
	js          *jsEnv // the JS anchors' node and scripts; nil with -js=false
	stderr      io.Writer
	outMu       sync.Mutex

	children procs.Group // every process started, for the final cleanup
}

func (h *harness) notef(format string, args ...any) {
	h.outMu.Lock()
	defer h.outMu.Unlock()
	fmt.Fprintf(h.stderr, "load: "+format+"\n", args...)
}

func (h *harness) verbosef(format string, args ...any) {
	if h.opt.verbose {
		h.notef(format, args...)
	}
}

// cleanup stops every process still running, last started first, and reaps them all. Every
// measurement stops its own processes; this is the guard for a run that failed midway.
func (h *harness) cleanup() {
	h.children.StopAll(syscall.SIGTERM, 20*time.Second, func(err error) { h.notef("%v", err) })
}

// env is what one measurement runs on: a NATS server on a fresh store, a Co-browse Server (when
// asked for), the harness's NATS connection, and the daemons it starts.
type env struct {
	h         *harness
	name      string
	dir       string
	transport string // the daemon's and the anchors' CometD transport (websocket: the daemon's default)

	nats     *procs.Proc
	natsURL  string
	natsProf string          // host:port of natsd's pprof (-profile-natsd)
	profiled map[string]bool // streams a natsd profile was taken for (one per stream and measurement)

	gcb  *procs.Proc
	gcbR gcbReady
	ctl  *gcbClient

	nc *nats.Conn
	js jetstream.JetStream

	daemons []*daemon
	files   []*os.File
}

// newEnv starts the NATS server and, when gcbNodes > 0, the Co-browse Server, and connects.
// On error what was started is stopped.
func (h *harness) newEnv(ctx context.Context, name string, gcbNodes int) (_ *env, err error) {
	e := &env{h: h, name: name, dir: filepath.Join(h.dir, name)}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	if err := os.MkdirAll(e.dir, 0o755); err != nil {
		return nil, err
	}
	if err := e.startNATS(ctx); err != nil {
		return nil, err
	}
	if gcbNodes > 0 {
		if err := e.startGCB(ctx, gcbNodes); err != nil {
			return nil, err
		}
	}
	e.nc, err = nats.Connect(e.natsURL, nats.Name("load-harness"))
	if err != nil {
		return nil, fmt.Errorf("nats: %w", err)
	}
	e.js, err = jetstream.New(e.nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		return nil, err
	}
	return e, nil
}

func (e *env) openLog(name string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(e.dir, name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	e.files = append(e.files, f)
	return f, nil
}

// startHelper starts this program in a helper role and waits until its stdout says it is ready:
// parse returns true for the ready line.
func (e *env) startHelper(ctx context.Context, role string, args []string, parse func(line []byte) bool) (*procs.Proc, error) {
	out, err := e.openLog(role + ".out")
	if err != nil {
		return nil, err
	}
	ready := make(chan struct{})
	var once sync.Once
	w := procs.NewLineWriter(out, func(line []byte) {
		if parse(line) {
			once.Do(func() { close(ready) })
		}
	})
	p, err := procs.Spawn(role, e.h.self, args, childEnv(helperEnv+"="+role), w, out)
	if err != nil {
		return nil, err
	}
	e.h.children.Add(p)
	select {
	case <-ready:
		return p, nil
	case <-p.Exited():
		return nil, fmt.Errorf("%s exited before it was ready: %v (see %s)", role, p.Err(), out.Name())
	case <-time.After(procs.Wait):
		_ = p.Kill()
		return nil, fmt.Errorf("%s not ready within %v", role, procs.Wait)
	case <-ctx.Done():
		_ = p.Kill()
		return nil, ctx.Err()
	}
}

func (e *env) startNATS(ctx context.Context) error {
	var url string
	args := []string{"-store", filepath.Join(e.dir, "nats-store"), "-log", filepath.Join(e.dir, "natsd.log")}
	if e.h.opt.profileNATS > 0 {
		args = append(args, "-prof")
	}
	p, err := e.startHelper(ctx, roleNATS, args,
		func(line []byte) bool {
			if a, ok := bytes.CutPrefix(line, []byte("pprof ")); ok {
				e.natsProf = string(a) // printed before the ready line
			}
			if u, ok := bytes.CutPrefix(line, []byte("ready ")); ok {
				url = string(u)
				return true
			}
			return false
		})
	if err != nil {
		return err
	}
	e.nats, e.natsURL = p, url
	return nil
}

func (e *env) startGCB(ctx context.Context, nodes int) error {
	var r gcbReady
	p, err := e.startHelper(ctx, roleGCB, []string{"-nodes", fmt.Sprint(nodes)}, func(line []byte) bool {
		return json.Unmarshal(line, &r) == nil && r.Control != "" && r.Front != ""
	})
	if err != nil {
		return err
	}
	e.gcb, e.gcbR, e.ctl = p, r, newGCBClient(r.Control)
	return nil
}

// close stops the daemons (SIGTERM), the Co-browse Server and NATS, and reaps them. It returns
// what went wrong with a daemon's exit (it had to be killed, or exited with an error).
func (e *env) close() error {
	var errs []error
	for _, d := range e.daemons {
		if err := d.stop(); err != nil {
			errs = append(errs, err)
		}
	}
	if e.nc != nil {
		e.nc.Close()
	}
	if e.gcb != nil {
		if err := e.gcb.Stop(syscall.SIGTERM, 20*time.Second); err != nil {
			e.h.notef("%v", err)
		}
	}
	if e.nats != nil {
		if err := e.nats.Stop(syscall.SIGTERM, 30*time.Second); err != nil {
			e.h.notef("%v", err)
		}
	}
	for _, f := range e.files {
		_ = f.Close()
	}
	e.files = nil
	return errors.Join(errs...)
}

// checkDaemons reports a daemon that exited on its own.
func (e *env) checkDaemons() error {
	for _, d := range e.daemons {
		if d.p != nil && d.p.Done() && !d.p.Signaled() {
			return fmt.Errorf("%s exited on its own: %v (last log lines below)\n%s", d.name(), d.p.Err(), procs.LogTail(d.logPath, 8))
		}
	}
	return nil
}

// every polls cond every interval until it holds, within bound. An error from cond (a NATS request
// timing out on a busy machine) is retried; the last one is returned if the bound passes. A
// daemon that exits on its own ends the wait.
func (e *env) every(ctx context.Context, interval, bound time.Duration, what string, cond func(context.Context) (bool, error)) error {
	deadline := time.Now().Add(bound)
	t := time.NewTicker(interval)
	defer t.Stop()
	var last error
	for {
		ok, err := cond(ctx)
		if err == nil && ok {
			return nil
		}
		if err != nil {
			last = err
		}
		if err := e.checkDaemons(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			if last != nil {
				return fmt.Errorf("%s: not within %v (last error: %w)", what, bound, last)
			}
			return fmt.Errorf("%s: not within %v", what, bound)
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// streamInfo reads a stream's info; nil when it does not exist.
func (e *env) streamInfo(ctx context.Context, name string) (*jetstream.StreamInfo, error) {
	s, err := e.js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return s.CachedInfo(), nil
}

// consumerInfo reads a consumer's info; nil when it (or its stream) does not exist.
func (e *env) consumerInfo(ctx context.Context, stream, name string) (*jetstream.ConsumerInfo, error) {
	c, err := e.js.Consumer(ctx, stream, name)
	if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return c.CachedInfo(), nil
}

// publish publishes one inbound message and waits for its PubAck.
func (e *env) publish(ctx context.Context, subject string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := e.js.Publish(pctx, subject, data); err != nil {
		return fmt.Errorf("publish %s: %w", subject, err)
	}
	return nil
}

// publishAll publishes messages asynchronously (at most 4,096 awaiting their PubAck) and waits
// until every one is PubAck'd.
func (e *env) publishAll(ctx context.Context, msgs []inbound) error {
	_, err := e.publishTimed(ctx, msgs)
	return err
}

// publishTimed is publishAll, and returns when each message was handed to the client.
func (e *env) publishTimed(ctx context.Context, msgs []inbound) ([]time.Time, error) {
	futures := make([]jetstream.PubAckFuture, 0, len(msgs))
	sent := make([]time.Time, 0, len(msgs))
	for _, m := range msgs {
		sent = append(sent, time.Now())
		// At most 4,096 await their PubAck (WithPublishAsyncMaxPending); a publish waits for room
		// rather than failing while the server is busy (sourcing into the group's stream).
		f, err := e.js.PublishAsync(m.subject, m.data, jetstream.WithStallWait(time.Minute))
		if err != nil {
			return nil, fmt.Errorf("publish %s: %w", m.subject, err)
		}
		futures = append(futures, f)
	}
	select {
	case <-e.js.PublishAsyncComplete(): // every future is settled now
	case <-time.After(5 * time.Minute):
		return nil, errors.New("publish: PubAcks still missing after 5 minutes")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	var failed int
	var last error
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			failed++
			last = err
		default:
			failed++
			last = errors.New("no PubAck")
		}
	}
	if failed > 0 {
		return nil, fmt.Errorf("publish: %d of %d messages not stored: %w", failed, len(msgs), last)
	}
	return sent, nil
}

// inbound is one prepared inbound message.
type inbound struct {
	subject string
	data    []byte
}

// profileNATS takes a CPU profile of the NATS server for -profile-natsd from now on, into
// natsd-cpu-<stream>.pprof in the measurement's folder (go tool pprof -top reads it), when asked
// for: the bare run drains two streams, and only the work queue's drain removes what it acks. The
// returned channel says when it is written (nil when no profile is taken); cancel cuts it short.
func (e *env) profileNATS(ctx context.Context, stream string) (done chan error, cancel func()) {
	d := e.h.opt.profileNATS
	if d <= 0 || e.natsProf == "" {
		return nil, func() {}
	}
	ctx, cancel = context.WithTimeout(ctx, d+30*time.Second)
	done = make(chan error, 1)
	go func() {
		done <- func() error {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", e.natsProf, int(d.Seconds())), nil)
			if err != nil {
				return err
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("HTTP %d", resp.StatusCode)
			}
			path := filepath.Join(e.dir, "natsd-cpu-"+stream+".pprof")
			f, err := os.Create(path)
			if err != nil {
				return err
			}
			if _, err := io.Copy(f, resp.Body); err != nil {
				f.Close()
				return err
			}
			e.h.notef("%s: natsd CPU profile of %v written to %s", e.name, d, path)
			return f.Close()
		}()
	}()
	return done, cancel
}
