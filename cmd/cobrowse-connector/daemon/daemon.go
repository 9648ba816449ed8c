// Package daemon wires the daemon together: NATS (external, or an embedded server), the inbound
// consumer (chat), the brain (controller), the enabled vendors' connectors (connector/gcb,
// connector/zoom), the webhook router and the public listener, and the outbound publisher (attach). Run builds them in that dependency order and tears them down in
// reverse under a bounded shutdown. It holds no policy of its own: every decision lives in the
// packages it wires.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cobrowse-connector/cobrowse-connector/attach"
	"github.com/cobrowse-connector/cobrowse-connector/chat"
	"github.com/cobrowse-connector/cobrowse-connector/configs"
	"github.com/cobrowse-connector/cobrowse-connector/connector"
	"github.com/cobrowse-connector/cobrowse-connector/connector/gcb"
	"github.com/cobrowse-connector/cobrowse-connector/connector/zoom"
	"github.com/cobrowse-connector/cobrowse-connector/controller"
)

// Options are what a caller of Run may add to the config.
type Options struct {
	// Logger receives every component's logs. Nil: built from cfg.Log, writing to stderr.
	Logger *slog.Logger
	// Ready, if set, is called once the daemon consumes, with the NATS URL it uses.
	Ready func(natsURL string)
	// PublicAddr, if set, is called before Ready with the public listener's address, when there
	// is one (http.public_listen may ask for any free port).
	PublicAddr func(addr string)
	// InternalAddr, if set, is called with the internal listener's address (http.listen, which may
	// ask for any free port) as soon as it listens: before NATS is connected.
	InternalAddr func(addr string)
	// Abort, if set, stops the daemon abruptly when closed, as a crash would: the NATS connection
	// is closed first, so nothing more is acked, published or saved, and sessions are left live.
	// For tests of recovery.
	Abort <-chan struct{}
	// ConfigPath is the file cfg was loaded from (LoadRunConfig); empty: the embedded default and
	// the environment. A reload (SIGHUP, Reload) loads it again the same way and applies what it
	// can without a restart: the secrets (see reload.go).
	ConfigPath string
	// SIGHUP makes SIGHUP reload the config (`run` sets it). It is caught from the start of Run, so
	// that one sent while the daemon waits for NATS never takes its default action (ending the
	// process). Off (an embedder such as the demo, whose config LoadRunConfig would not give back),
	// SIGHUP is left alone.
	SIGHUP bool
	// OwnsProcess: the process is the daemon's alone (`run` sets it), so it may tune the process's
	// garbage collector (heap_headroom_mb, heap.go). Off, an embedder keeps its GOGC.
	OwnsProcess bool
	// Reload, if set, triggers a reload at each value received, instead of SIGHUP. For tests.
	Reload <-chan struct{}
	// Reloaded, if set, is called after each reload with its outcome: nil when the config was read
	// and applied, the refusal otherwise. For tests.
	Reloaded func(error)
}

// Run runs the daemon until ctx is done, then shuts it down within cfg.ShutdownTimeout.
func Run(ctx context.Context, cfg configs.Config, opts Options) (err error) {
	if err := cfg.ValidateRun(); err != nil {
		return err
	}
	if err := CheckFiles(cfg); err != nil {
		return err
	}
	var hup chan os.Signal // nil (never ready) unless SIGHUP reloads
	if opts.SIGHUP && opts.Reload == nil {
		hup = make(chan os.Signal, 1) // one pending reload is enough: it reads the newest file
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
	}
	log := opts.Logger
	if log == nil {
		if log, err = NewLogger(os.Stderr, cfg.Log.Format, cfg.Log.Level); err != nil {
			return err
		}
	}

	// Resources are released in reverse order of creation, each by its own closer.
	var closers []func()
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}()
	headroom := 0 // MiB, as applied: 0 when the collector is left alone
	if opts.OwnsProcess {
		if t := startHeapTuner(uint64(cfg.HeapHeadroomMB)<<20, nil); t != nil {
			headroom = cfg.HeapHeadroomMB
			closers = append(closers, t.stop)
		}
	}

	// The internal listener comes first and goes last: /healthz answers from the start, and
	// /readyz says what is missing (NATS, the consumer) until the daemon consumes.
	ready := &readiness{}
	met := newMetrics(ready)
	ops, err := newOpsServer(cfg.HTTP, met.reg, ready, log)
	if err != nil {
		return err
	}
	if ops != nil {
		ops.start()
		closers = append(closers, ops.shutdown)
		if opts.InternalAddr != nil {
			opts.InternalAddr(ops.Addr())
		}
	}

	natsURL := cfg.NATS.URL
	if natsURL == "" && cfg.NATS.Embedded.Enabled {
		ns, stop, err := startEmbeddedNATS(cfg.NATS.Embedded, log)
		if err != nil {
			return err
		}
		closers = append(closers, stop)
		natsURL = ns.ClientURL()
	}
	nc, err := connectNATS(ctx, natsURL, cfg.NATS, log)
	if err != nil {
		if ctx.Err() != nil {
			log.Info("stopped while waiting for NATS")
			return nil
		}
		return err
	}
	closers = append(closers, func() { drainNATS(nc, log) })
	ready.setNATS(nc)
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}

	setupCtx, cancelSetup := context.WithTimeout(ctx, 30*time.Second)
	defer cancelSetup()
	pub, err := attach.New(setupCtx, js, attach.Config{
		Prefix:          cfg.NATS.Prefix,
		Stream:          cfg.NATS.Outbound.Stream,
		DuplicateWindow: cfg.NATS.Outbound.DuplicateWindow.D(),
		PublishTimeout:  cfg.NATS.Outbound.PublishTimeout.D(),
		MaxAge:          cfg.NATS.Outbound.MaxAge.D(),
		HandoffStream:   cfg.NATS.Outbound.HandoffStream,
		HandoffMaxAge:   cfg.NATS.Outbound.HandoffMaxAge.D(),
		Replicas:        cfg.NATS.Replicas,
		Logger:          log,
		PublishLatency:  met.publish,
	})
	if err != nil {
		return fmt.Errorf("outbound stream: %w", err)
	}
	store, err := controller.OpenKVStore(setupCtx, js, controller.KVConfig{Bucket: cfg.NATS.KVBucket, TTL: cfg.NATS.KVTTL.D(), Replicas: cfg.NATS.Replicas,
		Latency: met.kv, Retention: cfg.Controller.Retention.D(), Logger: log})
	if err != nil {
		return err
	}
	vs, err := newVendors(cfg, log)
	if err != nil {
		return err
	}
	closers = append(closers, vs.close)
	ready.setVendors(vs.breakers)

	// The consumer group says which interactions this replica owns; the controller acts for
	// those only, and takes up their live sessions when the consumer tells it (chat.Assignee).
	inCfg := chatConfig(cfg, log)
	inCfg.Metrics = met.chat
	consumer, err := chat.NewConsumer(setupCtx, js, inCfg)
	if err != nil {
		return fmt.Errorf("inbound consumer: %w", err)
	}
	ready.setConsumer(consumer)
	svc, err := startService(nc, func(ctx context.Context) (*chat.Group, error) {
		return chat.OpenGroup(ctx, js, chatConfig(cfg, log))
	}, cfg.Cluster.Member, log)
	if err != nil {
		return err
	}
	closers = append(closers, func() { _ = svc.Stop() })
	ccfg := controllerConfig(cfg, log)
	ccfg.Owns = consumer.Owns
	ccfg.Metrics = met.ctrl
	ctrl, err := controller.New(ccfg, vs.conns, store, pub)
	if err != nil {
		return err
	}
	if err := addOperatorEndpoints(svc, newOperatorService(cfg, nc, js, store, ctrl, consumer, vs, log)); err != nil {
		return err
	}
	// Closers run last first. Once the actors are done, the member's partitions are handed over
	// at once (not after the pinned TTL): a restarted member or a standby instance takes them.
	closers = append(closers, handOver(ctx, log, consumer.LetGo, "handing the member's partitions over failed: they move after cluster.pinned_ttl"))
	// The controller's actors are stopped before the connector and NATS go, within the shutdown
	// bound; an abort gives them none.
	shutdownBound := cfg.ShutdownTimeout.D()
	closers = append(closers, func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownBound)
		defer cancel()
		if err := ctrl.Shutdown(sctx); err != nil {
			log.Warn("shutdown", "error", err)
		}
	})
	// Zoom's webhooks pass through NATS: the router (its stream made before the public listener
	// takes the first delivery) hands each to the interaction that holds the session.
	var router *chat.Router
	if vs.zoom != nil {
		if router, err = chat.NewRouter(setupCtx, js, routerConfig(cfg, ctrl, log)); err != nil {
			return fmt.Errorf("webhook router: %w", err)
		}
		// After the run (closers run last first): another replica routes at once.
		closers = append(closers, handOver(ctx, log, router.LetGo, "handing the webhook routing over failed: another replica routes after cluster.pinned_ttl"))
	}
	public, err := newPublicServer(cfg, vs, js, store, log)
	if err != nil {
		return err
	}
	cancelSetup()

	// The consumer feeds the controller; the sweep runs beside them. Both stop with runCtx.
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	var wg sync.WaitGroup
	var consumerErr error // written by the consumer's goroutine, read once consumerDone is closed
	consumerDone := make(chan struct{})
	wg.Go(func() {
		defer close(consumerDone)
		consumerErr = consumer.Run(runCtx, ctrl)
	})
	wg.Go(func() { _ = ctrl.Run(runCtx) })
	if router != nil {
		wg.Go(func() {
			if err := router.Run(runCtx); err != nil && runCtx.Err() == nil {
				log.Error("webhook router stopped", "error", err)
			}
		})
	}
	var tokens *zoom.TokenEndpoint
	if public != nil {
		tokens = public.tokens
	}
	if hup != nil || opts.Reload != nil {
		rl := newReloader(cfg, func() (configs.Config, error) { return LoadRunConfig(opts.ConfigPath) }, vs, tokens, log)
		startReloads(runCtx, &wg, rl, opts.Reload, hup, opts.Reloaded)
	}
	var publicDone chan struct{}
	if public != nil {
		publicDone = make(chan struct{})
		go func() {
			defer close(publicDone)
			if err := public.serve(); err != nil {
				log.Error("public listener stopped", "error", err)
			}
		}()
	}
	// The configured URLs may carry credentials: log them as the config shows them, masked.
	shown := cfg.Redacted()
	if shown.NATS.URL == "" {
		shown.NATS.URL = natsURL
	}
	log.Info("cobrowse-connector running", "version", BuildVersion(), "nats_url", shown.NATS.URL, "vendors", cfg.EnabledVendors(),
		"default_vendor", cfg.DefaultVendor(), "genesys_url", shown.Genesys.URL, "heap_headroom_mb", headroom)
	if public != nil && opts.PublicAddr != nil {
		opts.PublicAddr(public.Addr())
	}
	if opts.Ready != nil {
		opts.Ready(natsURL)
	}

	aborted := false
	select {
	case <-ctx.Done():
		log.Info("shutting down", "bound", cfg.ShutdownTimeout.D())
	case <-consumerDone:
		log.Error("inbound consumer stopped", "error", consumerErr)
	case <-opts.Abort:
		aborted = true
		log.Warn("aborting: closing NATS without draining")
		nc.Close()
	}

	ready.stopping.Store(true) // /readyz says 503 from here; /healthz answers until the end

	// Ordered shutdown: the public listener first (no webhook is taken that NATS could no longer
	// store), and the micro service (no status or session answer from a replica that is letting its
	// interactions go; Stop again in the closers is a no-op), then stop taking messages; then the
	// deferred closers let the actors finish theirs and release the connectors, NATS and the
	// embedded server, in that order.
	if public != nil {
		public.shutdown(ctx)
		<-publicDone
	}
	_ = svc.Stop()
	stopRun()
	wg.Wait()
	if aborted {
		shutdownBound = 0
		return nil
	}
	return consumerErr
}

func startEmbeddedNATS(cfg configs.EmbeddedNATSConfig, log *slog.Logger) (*server.Server, func(), error) {
	dir := cfg.StoreDir
	temp := dir == ""
	if temp {
		var err error
		if dir, err = os.MkdirTemp("", "cobrowse-nats-"); err != nil {
			return nil, nil, err
		}
	}
	port := cfg.Port
	if port < 0 {
		port = server.RANDOM_PORT
	}
	ns, err := server.NewServer(&server.Options{
		ServerName: "cobrowse-connector-embedded",
		Host:       cfg.Host,
		Port:       port,
		JetStream:  true,
		StoreDir:   dir,
		NoSigs:     true,
		NoLog:      true,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("embedded NATS server: %w", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, nil, errors.New("embedded NATS server: not ready within 10s")
	}
	log.Info("nats.embedded.enabled and no nats.url: started an embedded NATS server with JetStream (for development)", "nats_url", ns.ClientURL(), "store", dir)
	return ns, func() {
		ns.Shutdown()
		ns.WaitForShutdown()
		if temp {
			_ = os.RemoveAll(dir)
		}
	}, nil
}

// handOver is a closer that unpins a pinned consumer (letGo) within a bound, logging failure as
// warn: another instance then takes over after cluster.pinned_ttl instead of at once.
func handOver(ctx context.Context, log *slog.Logger, letGo func(context.Context) error, failed string) func() {
	return func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := letGo(uctx); err != nil {
			log.Warn(failed, "error", err) //nolint:sloglint // failed is a constant message, one per caller
		}
	}
}

// connectNATS connects to NATS. NATS may come up after the daemon (a pod's containers start in
// any order): the first connection is retried with backoff for up to nats.connect_wait, saying
// each time that the daemon is not ready; once connected, nats.go reconnects on its own.
func connectNATS(ctx context.Context, url string, cfg configs.NATSConfig, log *slog.Logger) (*nats.Conn, error) {
	l := log.With("component", "nats")
	// The files are read once, before the first attempt: retrying does not mend a file.
	fileOpts, err := natsOptions(cfg)
	if err != nil {
		return nil, err
	}
	wait := cfg.ConnectWait.D()
	deadline := time.Now().Add(wait)
	delay := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		nc, err := dialNATS(url, cfg, fileOpts, l)
		if err == nil {
			if attempt > 1 {
				l.Info("connected to NATS", "nats_url", nc.ConnectedUrlRedacted(), "attempt", attempt)
			}
			return nc, nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			return nil, fmt.Errorf("nats: connect: no connection within nats.connect_wait (%s): %w", wait, err)
		}
		delay = min(delay, left)
		l.Warn("NATS not reachable; not ready, retrying", "error", err, "attempt", attempt, "retry_in", delay, "gives_up_in", left.Round(time.Second))
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("nats: connect: stopped while waiting for NATS: %w", err)
		}
		delay = min(2*delay, 5*time.Second)
	}
}

// dialNATS makes one connection attempt, with the options natsOptions read from files.
func dialNATS(url string, cfg configs.NATSConfig, fileOpts []nats.Option, l *slog.Logger) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				l.Warn("disconnected", "error", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { l.Info("reconnected", "nats_url", nc.ConnectedUrlRedacted()) }),
	}
	if cfg.User != "" {
		opts = append(opts, nats.UserInfo(cfg.User, cfg.Password.Reveal()))
	}
	if cfg.Token.Reveal() != "" {
		opts = append(opts, nats.Token(cfg.Token.Reveal()))
	}
	return nats.Connect(url, append(opts, fileOpts...)...)
}

// drainNATS flushes what is pending and closes the connection, within a bound.
func drainNATS(nc *nats.Conn, log *slog.Logger) {
	if nc.IsClosed() {
		return
	}
	closed := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if err := nc.Drain(); err != nil {
		nc.Close()
		return
	}
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		log.Warn("nats drain took longer than 5s; closing")
		nc.Close()
	}
}

func gcbConfig(cfg configs.Config, log *slog.Logger) gcb.Config {
	g := cfg.Genesys
	c := cfg.Controller
	return gcb.Config{
		ClusterURL:          g.URL,
		Origin:              g.Origin,
		CometDPath:          g.CometDPath,
		Transports:          g.Transports,
		RequestTimeout:      g.RequestTimeout.D(),
		MaxNetworkDelay:     g.MaxNetworkDelay.D(),
		JoinTimeout:         c.JoinTimeout.D(),
		StopTimeout:         c.StopWait.D(), // the CometD stop; the REST fallback then has request_timeout
		LostAfter:           g.LostAfter.D(),
		RejoinWindow:        g.RejoinWindow.D(),
		MaxConcurrentJoins:  g.MaxConcurrentJoins,
		SpareClients:        spareClients(g.SpareClients),
		WebSocketRefusalTTL: websocketMemory(g.WebSocketRefusalTTL.D()),
		AgentViewFragment:   g.AgentViewFragment,
		ControllerName:      g.ControllerName,
		Breaker:             breakerSettings(cfg, log),
		Logger:              log,
	}
}

// spareClients maps genesys.spare_clients (0: none) onto gcb's setting (zero: the default;
// negative: none).
func spareClients(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

// websocketMemory maps genesys.websocket_refusal_ttl (0s: not remembered) onto gcb's setting
// (zero: the default; negative: not remembered).
func websocketMemory(ttl time.Duration) time.Duration {
	if ttl == 0 {
		return -1
	}
	return ttl
}

func controllerConfig(cfg configs.Config, log *slog.Logger) controller.Config {
	c := cfg.Controller
	return controller.Config{
		Timers:   controller.Timers{NoAgentJoin: c.NoAgentJoin.D(), Inactivity: c.Inactivity.D()},
		StopWait: c.StopWait.D(),
		// One stop call: the CometD stop, then the REST fallback, each within its own bound (or
		// CEC's release, within its request time-out).
		StopTimeout:     c.StopWait.D() + max(cfg.Genesys.RequestTimeout.D(), cfg.CEC.RequestTimeout.D()) + time.Second,
		JoinTimeout:     c.JoinTimeout.D(),
		PublishTimeout:  cfg.NATS.Outbound.PublishTimeout.D(),
		RetryDelay:      c.RetryDelay.D(),
		StopRetry:       c.StopRetry.D(),
		MaxInteractions: c.MaxInteractions,
		Sweep:           c.Sweep,
		StopOnShutdown:  c.StopOnShutdown,
		EndWait:         c.EndWait.D(),
		DefaultVendor:   connector.Vendor(cfg.DefaultVendor()),
		Logger:          log,
	}
}

func chatConfig(cfg configs.Config, log *slog.Logger) chat.Config {
	in := cfg.NATS.Inbound
	roles := make([]chat.Role, len(cfg.Chat.TriggerRoles))
	for i, r := range cfg.Chat.TriggerRoles {
		roles[i] = chat.Role(r)
	}
	backoff := make([]time.Duration, len(in.Backoff))
	for i, b := range in.Backoff {
		backoff[i] = b.D()
	}
	return chat.Config{
		Prefix:        cfg.NATS.Prefix,
		Stream:        in.Stream,
		Durable:       in.Durable,
		Group:         cfg.Cluster.Group,
		Member:        cfg.Cluster.Member,
		Partitions:    cfg.Cluster.Partitions,
		PinnedTTL:     cfg.Cluster.PinnedTTL.D(),
		MaxPayload:    in.MaxPayload,
		AckWait:       in.AckWait.D(),
		MaxDeliver:    in.MaxDeliver,
		Backoff:       backoff,
		MaxAckPending: in.MaxAckPending,
		MaxAge:        in.MaxAge.D(),
		Replicas:      cfg.NATS.Replicas,
		TriggerRoles:  roles,
		Logger:        log,
	}
}
