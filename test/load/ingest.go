package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Ingestion: a backlog of ordinary chat messages in CC_INBOUND (60,000 over 20,000 interactions by
// default, no created events), drained by bare nats.go pull consumers acking every message with an
// asynchronous Ack, the anchors, and by the daemon, one replica, then two replicas r1 and r2. Each
// on a NATS server of its own on a fresh store.
//
// The anchors, no subject filter, explicit acks, MaxAckPending 20,000 (the daemon's default):
//   - on the same stream as the daemon: a work-queue stream made as the daemon makes its consumer
//     group's (groupStreamConfig, chat/group.go: work-queue retention, sourcing CC_INBOUND with the
//     partition subject transform), its acks deleting messages. The goal is judged against it.
//     The harness waits until it has sourced the whole backlog before the drain is timed, and
//     checks that the daemon's own group stream is made the same way;
//   - on CC_INBOUND itself (limits retention), as a second reference.
// Each drains bareRuns times (the two in turn, each run on a fresh store with the work queue
// made before the backlog is published, as the daemon's is), the median run kept.
//
// The daemon reads through its consumer group (a work-queue stream sourcing CC_INBOUND), which
// `cobrowse-connector cluster add` can only change once a daemon has made it. So for (b) and (c)
// alike the daemon is started once on the empty store (it makes its streams, the group and its
// consumer), stopped, r2 added for (c), and only then is the backlog published. The server sources
// it into the group's stream while no daemon runs; the harness waits until that is done, so what
// is timed is the drain of a backlog by a restarted daemon: from the first delivery to the last
// ack, seen through the consumers' info (pollDrain).
//
// Correct means: the group's work queue is empty (every message acked), the daemon terminated none
// as malformed and logged no error, and it published nothing (no chat line is a start message).

type drainResult struct {
	Msgs        int            `json:"msgs"`
	Seconds     float64        `json:"seconds"`
	Rate        float64        `json:"msgs_per_s"`
	StartupS    float64        `json:"startup_s,omitempty"` // process start to first delivery (daemon)
	ConsumerCPU float64        `json:"consumer_cpu_pct"`    // the daemon(s), or the harness for the bare consumer, % of one core
	NATSCPU     float64        `json:"natsd_cpu_pct"`       // the NATS server, % of one core
	CPUPerMsgUs float64        `json:"consumer_cpu_us_per_msg"`
	Redelivered int            `json:"redelivered,omitempty"` // deliveries beyond the first, over the consumers
	Replicas    []replicaDrain `json:"replicas,omitempty"`
	Runs        []float64      `json:"runs_msgs_per_s,omitempty"` // every run's rate; the figures are the median run's
	Warnings    int            `json:"daemon_warnings,omitempty"`
	Errors      int            `json:"daemon_errors,omitempty"`
	top         []string
}

type replicaDrain struct {
	Member  string  `json:"member"`
	Msgs    uint64  `json:"msgs"`
	Seconds float64 `json:"seconds"`
	Rate    float64 `json:"msgs_per_s"`
}

type ingestResult struct {
	Interactions int          `json:"interactions"`
	Chats        int          `json:"chat_msgs"`
	Created      int          `json:"created_events"`
	Msgs         int          `json:"msgs"`
	LoadRate     float64      `json:"load_msgs_per_s"`     // publishing the backlog (PublishAsync), bare consumers' store
	SourceS      float64      `json:"anchor_wq_source_s"`  // the anchor's work queue sourcing the backlog (median run)
	Anchor       drainResult  `json:"anchor_same_stream"`  // bare consumer on a work queue made like the daemon's: the goal's anchor
	Inbound      drainResult  `json:"anchor_inbound"`      // bare consumer on CC_INBOUND
	Daemon       drainResult  `json:"daemon"`              // one replica, the default configuration
	Replicas2    *drainResult `json:"replicas2,omitempty"` // members r1 and r2
	Ratio        float64      `json:"ratio_same_stream"`   // daemon / same-stream anchor: the goal (>= 0.8)
	RatioInbound float64      `json:"ratio_inbound"`       // daemon / CC_INBOUND anchor
	Ratio2       float64      `json:"ratio2_same_stream,omitempty"`
	Ratio2In     float64      `json:"ratio2_inbound,omitempty"`
	PerReplica2  float64      `json:"replicas2_msgs_per_s_per_replica,omitempty"` // 2 replicas' rate / 2
	Scale2       float64      `json:"scale2,omitempty"`                           // 2 replicas / 1 replica
}

func (h *harness) ingest(ctx context.Context) (*ingestResult, error) {
	o := h.opt
	msgs := ingestMessages(o.interactions, o.msgs, o.created)
	r := &ingestResult{Interactions: o.interactions, Chats: o.msgs, Msgs: len(msgs)}
	if o.created {
		r.Created = o.interactions
	}
	h.notef("ingestion: %d messages (%d chat lines, %d created events) over %d interactions", r.Msgs, r.Chats, r.Created, r.Interactions)

	var err error
	if err = h.ingestBare(ctx, msgs, r); err != nil {
		return nil, fmt.Errorf("ingestion, bare consumers: %w", err)
	}
	h.notef("ingestion: bare consumer on the work queue %.0f msgs/s, on %s %.0f msgs/s (backlog published at %.0f msgs/s)", r.Anchor.Rate, inboundStream, r.Inbound.Rate, r.LoadRate)
	if r.Daemon, err = h.ingestDaemonRuns(ctx, "ingest-daemon", msgs, []string{""}); err != nil {
		return nil, fmt.Errorf("ingestion, daemon: %w", err)
	}
	h.notef("ingestion: daemon %.0f msgs/s", r.Daemon.Rate)
	r.Ratio, r.RatioInbound = div(r.Daemon.Rate, r.Anchor.Rate), div(r.Daemon.Rate, r.Inbound.Rate)
	if o.replicas2 {
		d2, err := h.ingestDaemonRuns(ctx, "ingest-replicas", msgs, []string{"r1", "r2"})
		if err != nil {
			return nil, fmt.Errorf("ingestion, 2 replicas: %w", err)
		}
		h.notef("ingestion: 2 replicas %.0f msgs/s", d2.Rate)
		r.Replicas2 = &d2
		r.Ratio2, r.Ratio2In = div(d2.Rate, r.Anchor.Rate), div(d2.Rate, r.Inbound.Rate)
		r.PerReplica2 = d2.Rate / 2
		r.Scale2 = div(d2.Rate, r.Daemon.Rate)
	}
	return r, nil
}

// groupStreamConfig is the anchor's work queue: the stream the daemon makes for its consumer
// group (chat.Consumer.ensureGroupStream with the defaults: group cobrowse, 16 partitions, one
// stream replica, sourcing CC_INBOUND from its first message). ingestDaemon checks the daemon's
// own against it (sameStreamProblem).
func groupStreamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        groupStream,
		Description: "inbound messages by partition, for the consumer group " + defaultGroup,
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    1,
		Discard:     jetstream.DiscardNew,
		Sources: []*jetstream.StreamSource{{
			Name:              inboundStream,
			SubjectTransforms: partitionTransforms(prefix, defaultPartitions),
		}},
		AllowDirect: true,
		Metadata:    map[string]string{"cobrowse-connector.created": "1"},
	}
}

// partitionTransforms are the group stream's source transforms, as chat/group.go makes them:
// "<partition of the interaction id>.<subject>", for each of the three inbound subjects.
func partitionTransforms(prefix string, n int) []jetstream.SubjectTransformConfig {
	return []jetstream.SubjectTransformConfig{
		{Source: prefix + ".chat.*.message", Destination: fmt.Sprintf("{{Partition(%d,1)}}.%s.chat.{{Wildcard(1)}}.message", n, prefix)},
		{Source: prefix + ".interaction.*.event", Destination: fmt.Sprintf("{{Partition(%d,1)}}.%s.interaction.{{Wildcard(1)}}.event", n, prefix)},
		{Source: prefix + ".signal.*.*", Destination: fmt.Sprintf("{{Partition(%d,1)}}.%s.signal.{{Wildcard(1)}}.{{Wildcard(2)}}", n, prefix)},
	}
}

// sameStreamProblem says how the daemon's group stream differs from the anchor's in what a drain
// depends on; "" when it does not.
func sameStreamProblem(anchor, daemon jetstream.StreamConfig) string {
	src := func(c jetstream.StreamConfig) string {
		var parts []string
		for _, s := range c.Sources {
			var ts []string
			for _, t := range s.SubjectTransforms {
				ts = append(ts, t.Source+"->"+t.Destination)
			}
			parts = append(parts, fmt.Sprintf("%s@%d[%s]", s.Name, s.OptStartSeq, strings.Join(ts, ",")))
		}
		return strings.Join(parts, "; ")
	}
	switch {
	case anchor.Retention != daemon.Retention:
		return fmt.Sprintf("retention %v, the anchor's %v", daemon.Retention, anchor.Retention)
	case anchor.Storage != daemon.Storage || anchor.Replicas != daemon.Replicas:
		return fmt.Sprintf("storage %v x%d, the anchor's %v x%d", daemon.Storage, daemon.Replicas, anchor.Storage, anchor.Replicas)
	case anchor.Discard != daemon.Discard:
		return fmt.Sprintf("discard %v, the anchor's %v", daemon.Discard, anchor.Discard)
	case len(daemon.Subjects) > 0:
		return fmt.Sprintf("subjects %v of its own", daemon.Subjects)
	case src(anchor) != src(daemon):
		return fmt.Sprintf("sources %s, the anchor's %s", src(daemon), src(anchor))
	case anchor.AllowDirect != daemon.AllowDirect:
		return fmt.Sprintf("allow_direct %v", daemon.AllowDirect)
	}
	return ""
}

// createInbound creates CC_INBOUND as the daemon would (chat.Consumer.ensureStream), for the
// bare consumer's store, where no daemon runs.
func (e *env) createInbound(ctx context.Context) error {
	_, err := e.js.CreateStream(ctx, jetstream.StreamConfig{
		Name:        inboundStream,
		Description: "contact-center chat messages and interaction events",
		Subjects:    []string{prefix + ".chat.*.message", prefix + ".interaction.*.event", prefix + ".signal.*.*"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Discard:     jetstream.DiscardOld,
		Duplicates:  2 * time.Minute,
		MaxAge:      168 * time.Hour,
		Replicas:    1,
		Metadata:    map[string]string{"cobrowse-connector.created": "1"},
	})
	return err
}

// load publishes the backlog and checks that the inbound stream holds all of it; it returns the
// publish rate.
func (e *env) load(ctx context.Context, msgs []inbound) (float64, error) {
	began := time.Now()
	if err := e.publishAll(ctx, msgs); err != nil {
		return 0, err
	}
	took := time.Since(began)
	info, err := e.streamInfo(ctx, inboundStream)
	if err != nil || info == nil {
		return 0, fmt.Errorf("stream %s after the load: %v", inboundStream, err)
	}
	if info.State.Msgs != uint64(len(msgs)) {
		return 0, fmt.Errorf("stream %s holds %d messages after publishing %d", inboundStream, info.State.Msgs, len(msgs))
	}
	return div(float64(len(msgs)), took.Seconds()), nil
}

// ingestBare runs the bare consumers bareRuns times, each run on a NATS server of its own: the
// median run of each anchor is kept.
func (h *harness) ingestBare(ctx context.Context, msgs []inbound, res *ingestResult) error {
	var inRuns, wqRuns []drainResult
	var sourced, loads []float64
	for k := range h.bareRuns() {
		in, wq, src, load, err := h.bareRun(ctx, k, msgs)
		if err != nil {
			return err
		}
		inRuns, wqRuns = append(inRuns, in), append(wqRuns, wq)
		sourced, loads = append(sourced, src.Seconds()), append(loads, load)
		h.verbosef("ingestion: run %d: bare consumer on %s %.0f msgs/s, on the work queue %.0f msgs/s (sourced %.2f s after the publish)", k+1, inboundStream, in.Rate, wq.Rate, src.Seconds())
	}
	res.Inbound, res.Anchor = medianRun(inRuns), medianRun(wqRuns)
	slices.Sort(sourced)
	slices.Sort(loads)
	res.SourceS, res.LoadRate = sourced[(len(sourced)-1)/2], loads[(len(loads)-1)/2]
	return nil
}

// bareRun is one run of the anchors on a fresh store, made as the daemon's is when its backlog
// comes: CC_INBOUND and the work queue (groupStreamConfig) exist before the backlog is published,
// so that the work queue sources it as it is published. (Sourcing a backlog that is there already
// is slow: the source's consumer has the three inbound filter subjects, and the server finds each
// next message of a filtered consumer by scanning the backlog's subjects.) Once the work queue has
// sourced all of it, the bare consumer on CC_INBOUND drains, then the one on the work queue.
// It returns both drains, how long after the publish the work queue had it all, and the publish
// rate.
func (h *harness) bareRun(ctx context.Context, k int, msgs []inbound) (in, wq drainResult, sourced time.Duration, loadRate float64, err error) {
	e, err := h.newEnv(ctx, fmt.Sprintf("ingest-bare-%d", k+1), 0)
	if err != nil {
		return in, wq, 0, 0, err
	}
	defer func() { err = errors.Join(err, e.close()) }()
	if err := e.createInbound(ctx); err != nil {
		return in, wq, 0, 0, err
	}
	if _, err := e.js.CreateStream(ctx, groupStreamConfig()); err != nil {
		return in, wq, 0, 0, fmt.Errorf("the anchor's work queue: %w", err)
	}
	if loadRate, err = e.load(ctx, msgs); err != nil {
		return in, wq, 0, 0, err
	}
	published := time.Now()
	total := uint64(len(msgs))
	if err := e.every(ctx, 20*time.Millisecond, h.opt.drainTimeout, "the anchor's work queue sourcing the backlog", func(ctx context.Context) (bool, error) {
		info, err := e.streamInfo(ctx, groupStream)
		return err == nil && info != nil && info.State.Msgs >= total && info.State.LastSeq >= total, err
	}); err != nil {
		return in, wq, 0, 0, err
	}
	sourced = time.Since(published)
	if in, err = e.bareDrain(ctx, inboundStream, "bare", total, nil); err != nil {
		return in, wq, 0, 0, fmt.Errorf("on %s: %w", inboundStream, err)
	}
	wq, err = e.bareDrain(ctx, groupStream, "bare", total, func(ctx context.Context) (bool, error) {
		info, err := e.streamInfo(ctx, groupStream) // a work queue: acked messages are removed
		return err == nil && info != nil && info.State.Msgs == 0, err
	})
	if err != nil {
		return in, wq, 0, 0, fmt.Errorf("on the work queue %s: %w", groupStream, err)
	}
	return in, wq, sourced, loadRate, nil
}

// bareRuns is how many times the bare consumer drains the backlog: it is quick, and its median
// is a steadier anchor on a noisy machine.
func (h *harness) bareRuns() int { return 3 * h.opt.ingestRuns }

// bareDrain drains stream with a bare consumer: a new durable, no filter, explicit acks, every
// message acked with Ack (asynchronous) in the Consume callback. done says the backlog is gone
// (nil: the consumer's ack floor reached the stream's last message, for a stream that keeps
// them). The durable is deleted afterwards.
func (e *env) bareDrain(ctx context.Context, stream, name string, total uint64, done func(context.Context) (bool, error)) (res drainResult, err error) {
	cons, err := e.js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{
		Durable:       name,
		AckPolicy:     jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		MaxAckPending: 20000, // nats.inbound.max_ack_pending's default
	})
	if err != nil {
		return res, err
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if derr := e.js.DeleteConsumer(dctx, stream, name); derr != nil && !errors.Is(derr, jetstream.ErrStreamNotFound) {
			err = errors.Join(err, fmt.Errorf("deleting the consumer %s: %w", name, derr))
		}
	}()
	cc, err := cons.Consume(func(m jetstream.Msg) { _ = m.Ack() })
	if err != nil {
		return res, err
	}
	defer func() {
		cc.Stop()
		<-cc.Closed()
	}()
	obs, err := e.pollDrain(ctx, stream, []string{name}, []int{0}, func(ctx context.Context, infos []*jetstream.ConsumerInfo) (bool, error) {
		if done != nil {
			return done(ctx)
		}
		return infos[0].AckFloor.Stream >= total, nil
	})
	if err != nil {
		return res, err
	}
	res = obs.result(int(total))
	res.Runs = nil
	return res, nil
}

// medianRun is the run of median rate, with every run's rate.
func medianRun(runs []drainResult) drainResult {
	sorted := slices.Clone(runs)
	slices.SortFunc(sorted, func(a, b drainResult) int { return cmp.Compare(a.Rate, b.Rate) })
	m := sorted[(len(sorted)-1)/2]
	m.Runs = nil
	for _, r := range runs {
		m.Runs = append(m.Runs, r.Rate)
	}
	return m
}

// ingestDaemonRuns runs ingestDaemon -ingest-runs times, each on a fresh store, and keeps the
// median run.
func (h *harness) ingestDaemonRuns(ctx context.Context, name string, msgs []inbound, members []string) (drainResult, error) {
	var runs []drainResult
	for k := range h.opt.ingestRuns {
		n := name
		if h.opt.ingestRuns > 1 {
			n = fmt.Sprintf("%s-%d", name, k+1)
		}
		r, err := h.ingestDaemon(ctx, n, msgs, members)
		if err != nil {
			return drainResult{}, err
		}
		runs = append(runs, r)
	}
	m := medianRun(runs)
	if len(runs) == 1 {
		m.Runs = nil
	}
	return m, nil
}

// ingestDaemon runs one daemon per member ("" for the default member) on a fresh store and times
// their drain of the backlog.
func (h *harness) ingestDaemon(ctx context.Context, name string, msgs []inbound, members []string) (res drainResult, err error) {
	e, err := h.newEnv(ctx, name, 1)
	if err != nil {
		return res, err
	}
	defer func() { err = errors.Join(err, e.close()) }()
	var ds []*daemon
	for _, m := range members {
		d, err := e.addDaemon(m)
		if err != nil {
			return res, err
		}
		ds = append(ds, d)
	}
	// The first start makes the streams, the group (the first member alone) and its consumer.
	first := ds[0]
	if err := first.start(); err != nil {
		return res, err
	}
	if err := first.waitConsuming(ctx); err != nil {
		return res, err
	}
	if err := first.stop(); err != nil {
		return res, err
	}
	// The anchor drains a stream made like this one: check that it still is.
	if info, err := e.streamInfo(ctx, groupStream); err != nil || info == nil {
		return res, fmt.Errorf("the daemon's group stream %s: %v", groupStream, err)
	} else if why := sameStreamProblem(groupStreamConfig(), info.Config); why != "" {
		return res, fmt.Errorf("the daemon's group stream %s is no longer made like the same-stream anchor's (test/load groupStreamConfig): %s", groupStream, why)
	}
	if len(ds) > 1 {
		var others []string
		for _, d := range ds[1:] {
			others = append(others, d.member)
		}
		out, err := e.runCommand(ctx, append([]string{"cluster", "--config", first.cfgPath, "add"}, others...)...)
		if err != nil {
			return res, err
		}
		for _, m := range others {
			if !strings.Contains(string(out), fmt.Sprintf("%q", m)) {
				return res, fmt.Errorf("cluster add %s: the status printed after it does not name the member:\n%s", m, out)
			}
		}
		h.verbosef("%s: cluster add %s done", name, strings.Join(others, " "))
	}
	if _, err := e.load(ctx, msgs); err != nil {
		return res, err
	}
	total := uint64(len(msgs))
	// The server sources the backlog into the group's stream meanwhile; the stopped member's
	// pull requests expire within seconds. Both before the timed run.
	if err := e.every(ctx, 50*time.Millisecond, h.opt.drainTimeout, "the group stream sourcing the backlog", func(ctx context.Context) (bool, error) {
		info, err := e.streamInfo(ctx, groupStream)
		return err == nil && info != nil && info.State.LastSeq >= total, err
	}); err != nil {
		return res, err
	}
	if err := e.every(ctx, 50*time.Millisecond, 30*time.Second, "the stopped member's pull requests expiring", func(ctx context.Context) (bool, error) {
		info, err := e.consumerInfo(ctx, groupStream, first.memberName())
		return err == nil && (info == nil || info.NumWaiting == 0), err
	}); err != nil {
		return res, err
	}

	spawned := time.Now()
	pids := make([]int, 0, len(ds))
	names := make([]string, 0, len(ds))
	for _, d := range ds {
		if err := d.start(); err != nil {
			return res, err
		}
		pids = append(pids, d.p.Pid())
		names = append(names, d.memberName())
	}
	obs, err := e.pollDrain(ctx, groupStream, names, pids, func(ctx context.Context, _ []*jetstream.ConsumerInfo) (bool, error) {
		info, err := e.streamInfo(ctx, groupStream) // a work queue: acked messages are removed
		return err == nil && info != nil && info.State.Msgs == 0 && info.State.LastSeq >= total, err
	})
	if err != nil {
		return res, err
	}
	res = obs.result(len(msgs))
	res.StartupS = obs.start.Sub(spawned).Seconds()
	for _, d := range ds {
		w, errs, top := d.logSummary()
		res.Warnings += w
		res.Errors += errs
		res.top = append(res.top, top...)
		if n := d.logged("WARN", "malformed inbound message terminated"); n > 0 {
			return res, fmt.Errorf("%s terminated %d of the harness's messages as malformed (see %s)", d.name(), n, d.logPath)
		}
		if errs > 0 {
			return res, fmt.Errorf("%s logged %d errors: %s (see %s)", d.name(), errs, strings.Join(top, "; "), d.logPath)
		}
	}
	if info, err := e.streamInfo(ctx, "CC_COBROWSE"); err != nil || info == nil || info.State.Msgs != 0 {
		return res, fmt.Errorf("the daemon published %v outbound messages for a backlog without a start message (error: %v)", msgs0(info), err)
	}
	return res, nil
}

func msgs0(info *jetstream.StreamInfo) any {
	if info == nil {
		return "?"
	}
	return info.State.Msgs
}

// drainObs is what polling saw of a drain.
type drainObs struct {
	start, end time.Time
	members    []memberObs
	cpu        []float64 // per process polled, % of one core from start to end
	cpuUsed    []time.Duration
	natsCPU    float64
}

type memberObs struct {
	name       string
	start, end time.Time
	last       *jetstream.ConsumerInfo
}

// pollDrain watches a drain through the consumers' info. A consumer starts at the first poll
// that sees a delivery (polled every -poll until every consumer started) and ends with its last
// ack, the time the server reports with its ack floor (AckFloor.Last), once a poll (every
// -poll-slow from then on, so that the harness's requests weigh little on the server) sees it
// with nothing pending and nothing unacked. The drain ends at the last consumer's end, once done
// says the backlog is gone. CPU is measured from the first start to the poll that sees the end,
// for pids (0: the harness) and the NATS server.
func (e *env) pollDrain(ctx context.Context, stream string, members []string, pids []int,
	done func(context.Context, []*jetstream.ConsumerInfo) (bool, error)) (*drainObs, error) {
	obs := &drainObs{}
	for _, m := range members {
		obs.members = append(obs.members, memberObs{name: m})
	}
	var meter *cpuMeter
	var prof chan error
	stopProf := func() {}
	defer func() { // the profile is cut short if the drain failed; either way it is waited for
		if prof != nil {
			if obs.end.IsZero() {
				stopProf()
			}
			if err := <-prof; err != nil {
				e.h.notef("%s: natsd CPU profile: %v", e.name, err)
			}
			stopProf()
		}
	}()
	deadline := time.Now().Add(e.h.opt.drainTimeout)
	failures := 0 // consecutive polls that could not read the consumers (a busy server times out)
	for {
		now := time.Now()
		infos := make([]*jetstream.ConsumerInfo, len(members))
		started, ended := true, true
		var pollErr error
		for i := range obs.members {
			m := &obs.members[i]
			info, err := e.consumerInfo(ctx, stream, m.name)
			if err != nil {
				pollErr = err
				started, ended = false, false
				break
			}
			infos[i] = info
			if info == nil {
				started, ended = false, false
				continue
			}
			m.last = info
			if m.start.IsZero() && info.Delivered.Consumer > 0 {
				m.start = now
				if meter == nil {
					obs.start = now
					meter = startCPU(append(slices.Clone(pids), e.nats.Pid())...)
					if !e.profiled[stream] {
						if e.profiled == nil {
							e.profiled = make(map[string]bool)
						}
						e.profiled[stream] = true
						prof, stopProf = e.profileNATS(ctx, stream)
					}
				}
			}
			if m.start.IsZero() {
				started = false
			}
			if !m.start.IsZero() && m.end.IsZero() && info.NumPending == 0 && info.NumAckPending == 0 {
				m.end = now
				if info.AckFloor.Last != nil && info.AckFloor.Last.After(m.start) {
					m.end = *info.AckFloor.Last
				}
			}
			if m.end.IsZero() {
				ended = false
			}
		}
		if pollErr != nil {
			if failures++; failures > 20 {
				return nil, fmt.Errorf("draining %s: reading the consumers: %w", stream, pollErr)
			}
		} else {
			failures = 0
		}
		if ended {
			ok, err := done(ctx, infos)
			if err != nil {
				ok = false // read again at the next poll
			}
			if ok {
				for _, m := range obs.members {
					obs.end = later(obs.end, m.end)
				}
				break
			}
		}
		if err := e.checkDaemons(); err != nil {
			return nil, err
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("draining %s: not within %v", stream, e.h.opt.drainTimeout)
		}
		interval := e.h.opt.poll
		if started {
			interval = e.h.opt.pollSlow
		}
		t := time.NewTimer(interval)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
	}
	// The share of a core each process used over the drain itself (it idles after the last ack,
	// until the poll that sees it).
	_, used := meter.shares()
	span := obs.end.Sub(obs.start).Seconds()
	for _, u := range used {
		obs.cpu = append(obs.cpu, div(100*u.Seconds(), span))
	}
	obs.cpuUsed = used[:len(pids)]
	obs.natsCPU = obs.cpu[len(pids)]
	obs.cpu = obs.cpu[:len(pids)]
	return obs, nil
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func (o *drainObs) result(msgs int) drainResult {
	secs := o.end.Sub(o.start).Seconds()
	r := drainResult{Msgs: msgs, Seconds: secs, Rate: div(float64(msgs), secs), NATSCPU: o.natsCPU}
	var used time.Duration
	for i, pct := range o.cpu {
		r.ConsumerCPU += pct
		used += o.cpuUsed[i]
	}
	r.CPUPerMsgUs = div(float64(used.Microseconds()), float64(msgs))
	var deliveries uint64
	for _, m := range o.members {
		var delivered uint64
		if m.last != nil {
			delivered = m.last.Delivered.Consumer // each delivery, redeliveries included, takes a consumer sequence
		}
		deliveries += delivered
		s := m.end.Sub(m.start).Seconds()
		r.Replicas = append(r.Replicas, replicaDrain{Member: m.name, Msgs: delivered, Seconds: s, Rate: div(float64(delivered), s)})
	}
	r.Redelivered = max(0, int(deliveries)-msgs)
	if len(o.members) == 1 {
		r.Replicas = nil
	}
	return r
}
