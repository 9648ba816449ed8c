package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/chat"
	"github.com/cobrowse-connector/cobrowse-connector/test/chaos/control"
)

// The ways an interaction ends.
const (
	endClosed       = "closed"
	endTransferred  = "transferred"
	endTimeout      = "timeout"
	endCustomerExit = "customer_exit"
	endAgentExit    = "agent_exit"
)

// interaction is one interaction of the scenario, played by one worker at a time.
type interaction struct {
	n     int
	id    string
	agent string
	rng   *rand.Rand // its own stream, so the choices do not depend on scheduling

	sess        control.Session // as created; sess.Token == "" if none could be created
	begunAt     time.Time       // when its first message was published (in flight from then)
	startAcked  bool            // the start message was PubAck'd by the inbound stream
	joined      bool            // the join attach was seen
	agentJoined bool
	ending      string
	closedAtEnd bool // the harness closed it in the final stage
	// A participant's exit: when it was asked (before the call), whether it ended the session,
	// and the user id of the Controller present just before ("" if none).
	exitAt  time.Time
	exitOK  bool
	exitCtl string
	notes   []string
	msgs    int
}

func newInteraction(n int, seed uint64) *interaction {
	return &interaction{
		n:     n,
		id:    fmt.Sprintf("ix-%04d", n),
		agent: fmt.Sprintf("agent-%04d", n), // one agent per interaction: the server allows one live session per agent
		rng:   rand.New(rand.NewPCG(seed, uint64(n))),
	}
}

func (it *interaction) notef(format string, args ...any) {
	it.notes = append(it.notes, fmt.Sprintf(format, args...))
}

func (it *interaction) nextID(kind string) string {
	it.msgs++
	return fmt.Sprintf("%s-%s-%d", kind, it.id, it.msgs)
}

// play runs the interactions, opt.concurrency at a time.
func (h *harness) play(ctx context.Context) {
	work := make(chan *interaction)
	var wg sync.WaitGroup
	for range h.opt.concurrency {
		wg.Go(func() {
			for it := range work {
				h.playOne(ctx, it)
			}
		})
	}
	for _, it := range h.inters {
		select {
		case work <- it:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(work)
	wg.Wait()
}

// playOne: a customer starts co-browse, the daemon joins, the agent (mostly) joins, then the
// interaction ends one of five ways.
func (h *harness) playOne(ctx context.Context, it *interaction) {
	h.progress.add()
	// Every draw is made up front, in a fixed order, so that a seed replays the same choices.
	agentJoins := it.rng.Float64() < h.opt.agentJoin
	hold := time.Duration(it.rng.Int64N(int64(h.opt.hold) + 1))
	endings := []string{endClosed, endTransferred, endTimeout, endCustomerExit, endAgentExit}
	it.ending = endings[it.rng.IntN(len(endings))]

	if err := h.createSession(ctx, it); err != nil {
		it.notef("no session created: %v", err)
		h.notef("%s: no session created: %v", it.id, err)
		return
	}
	h.verbosef("%s: session %s on %s", it.id, mask(it.sess.Token), it.sess.Node)
	it.begunAt = time.Now()
	createdID := it.nextID("ev")
	if err := h.publish(ctx, chat.EventSubject(prefix, it.id), createdID, chat.Event{
		ID: createdID, InteractionID: it.id, Type: chat.EventCreated, AgentID: it.agent, At: time.Now().UTC(),
	}); err != nil {
		it.notef("created event: %v", err)
	}
	startID := it.nextID("chat")
	if err := h.publish(ctx, chat.ChatSubject(prefix, it.id), startID, chat.Message{
		ID: startID, InteractionID: it.id,
		From: chat.Sender{Role: chat.RoleCustomer, ID: "customer-" + it.id, Name: "Customer"},
		Text: "{start:" + it.sess.Token + "}", SentAt: time.Now().UTC(),
	}); err != nil {
		it.notef("start message: %v", err)
		h.notef("%s: start message never PubAck'd: %v", it.id, err)
		return
	}
	it.startAcked = true

	hid := it.sess.HistoryID
	wctx, cancel := context.WithTimeout(ctx, h.opt.joinWait)
	h.obs.waitFor(wctx, func() bool {
		x := h.obs.byIID[it.id]
		return x.joinAttached(hid) || len(x.failed()) > 0
	})
	cancel()
	h.obs.mu.Lock()
	it.joined = h.obs.byIID[it.id].joinAttached(hid)
	h.obs.mu.Unlock()
	if !it.joined {
		it.notef("no join attach within %v", h.opt.joinWait)
	}

	if it.joined && agentJoins {
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := h.ctl.AgentJoin(actx, it.sess.Token, it.agent)
		cancel()
		var refused *control.Refused
		switch {
		case err == nil:
			it.agentJoined = true
		case errors.As(err, &refused):
			it.notef("agent join refused: %s", refused.Msg)
		default:
			it.notef("agent join: %v", err)
		}
	}
	select { // the interaction lives a while: the faults land on live sessions
	case <-time.After(hold):
	case <-ctx.Done():
		return
	}
	if it.ending == endAgentExit && !it.agentJoined {
		it.ending = endCustomerExit
	}
	h.verbosef("%s: ends by %s", it.id, it.ending)
	switch it.ending {
	case endCustomerExit, endAgentExit:
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		exit := h.ctl.CustomerExit
		if it.ending == endAgentExit {
			exit = h.ctl.AgentExit
		}
		it.exitAt = time.Now()
		res, err := exit(actx, it.sess.Token)
		cancel()
		if err != nil {
			it.notef("%s: %v", it.ending, err)
		} else {
			it.exitOK, it.exitCtl = true, res.Before.Controller()
		}
	default:
		ev := chat.Event{InteractionID: it.id, Type: chat.EventType(it.ending), AgentID: it.agent, At: time.Now().UTC()}
		if it.ending == endTransferred {
			ev.ToAgentID = it.agent + "-b"
		}
		ev.ID = it.nextID("ev")
		if err := h.publish(ctx, chat.EventSubject(prefix, it.id), ev.ID, ev); err != nil {
			it.notef("%s event: %v", it.ending, err)
		}
	}
	// Wait for the end (bounded), so that at most opt.concurrency interactions are live at once.
	wctx, cancel = context.WithTimeout(ctx, h.opt.joinWait)
	h.obs.waitFor(wctx, func() bool { return h.obs.byIID[it.id].settled(hid) })
	cancel()
}

// createSession plays the customer's browser: a session on the next live node. While a node is
// down the server skips it; the retries cover a control API that is briefly busy.
func (h *harness) createSession(ctx context.Context, it *interaction) error {
	var last error
	for attempt := range 20 {
		if attempt > 0 {
			select {
			case <-time.After(250 * time.Millisecond):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		s, err := h.ctl.Create(cctx, "")
		cancel()
		if err == nil {
			it.sess = s
			return nil
		}
		last = err
	}
	return last
}

// closeOpen publishes a closed event for every interaction whose start was PubAck'd and that has
// neither its final attach nor a failed event yet.
func (h *harness) closeOpen(ctx context.Context) {
	var open []*interaction
	h.obs.mu.Lock()
	for _, it := range h.inters {
		if it.startAcked && !h.obs.byIID[it.id].settled(it.sess.HistoryID) {
			open = append(open, it)
		}
	}
	h.obs.mu.Unlock()
	if len(open) > 0 {
		h.notef("closing %d interactions still open", len(open))
	}
	for _, it := range open {
		it.closedAtEnd = true
		id := it.nextID("ev")
		if err := h.publish(ctx, chat.EventSubject(prefix, it.id), id, chat.Event{ID: id, InteractionID: it.id, Type: chat.EventClosed, At: time.Now().UTC()}); err != nil {
			it.notef("final closed event: %v", err)
		}
	}
}

// settle waits, within opt.settle, until every interaction whose start was PubAck'd has its
// final attach or a failed event. It reports whether they all did.
func (h *harness) settle(ctx context.Context) bool {
	sctx, cancel := context.WithTimeout(ctx, h.opt.settle)
	defer cancel()
	return h.obs.waitFor(sctx, func() bool {
		for _, it := range h.inters {
			if it.startAcked && !h.obs.byIID[it.id].settled(it.sess.HistoryID) {
				return false
			}
		}
		return true
	})
}

// --- faults ---

// runFaults kills and restarts things while interactions are live: the faults, shuffled by the
// seed, are spread evenly over the run, fault i when i/(F+1) of the interactions have begun; the
// schedule paces itself on that count, not on the clock, so it lands on live work on a fast or a
// slow machine alike. Faults never overlap. In replicas mode the daemon kills are replica kills
// (a random replica; restarted at once and moved through the group in turn) and the NATS kills
// take one node of the cluster down.
func (h *harness) runFaults(ctx context.Context) error {
	var kinds []string
	if h.replicated() {
		for range h.opt.replicaKills {
			kinds = append(kinds, "replica")
		}
	} else {
		for range h.opt.daemonKills {
			kinds = append(kinds, "daemon")
		}
	}
	for range h.opt.nodeKills {
		kinds = append(kinds, "node")
	}
	for range h.opt.natsRestarts {
		kinds = append(kinds, "nats")
	}
	rng := rand.New(rand.NewPCG(h.opt.seed, 0xfa17))
	rng.Shuffle(len(kinds), func(i, j int) { kinds[i], kinds[j] = kinds[j], kinds[i] })
	// A fault that lasts (a node down, NATS down) lets many interactions begin; the next fault
	// still waits for half a share of new ones, so that faults do not pile up, but never for
	// more than the last interaction: every fault lands while interactions are live.
	gap := max(1, h.opt.n/(2*(len(kinds)+1)))
	after := 0
	replicaKills := 0
	for i, kind := range kinds {
		at := min(max(1, (i+1)*h.opt.n/(len(kinds)+1), after+gap), h.opt.n)
		if err := h.progress.wait(ctx, at); err != nil {
			return err
		}
		begun := h.progress.count()
		began := time.Now()
		var what string
		var err error
		switch kind {
		case "daemon":
			what, err = h.faultDaemon(ctx)
		case "replica":
			// The first replica kill is a prompt restart, the next a move through the group,
			// and so on: a short run with two has one of each.
			rp := h.replicas[rng.IntN(len(h.replicas))]
			what, err = h.faultReplica(ctx, rp, replicaKills%2 == 1)
			replicaKills++
		case "node":
			what, err = h.faultNode(ctx)
		case "nats":
			what, err = h.faultNATS(ctx, h.nats[rng.IntN(len(h.nats))])
		}
		after = h.progress.count()
		line := fmt.Sprintf("fault %d/%d when %d/%d had begun: %s (%v)", i+1, len(kinds), begun, h.opt.n, what, time.Since(began).Round(time.Millisecond))
		h.faultMu.Lock()
		h.faults = append(h.faults, line)
		h.faultMu.Unlock()
		h.notef("%s", line)
		if err != nil {
			return fmt.Errorf("%s: %w", kind, err)
		}
	}
	return nil
}

// faultDaemon SIGKILLs the daemon and starts it again at once.
func (h *harness) faultDaemon(ctx context.Context) (string, error) {
	rp := h.replicas[0]
	killed, err := h.killNoted(ctx, rp)
	if err != nil {
		return "daemon SIGKILL", err
	}
	if _, err := h.startDaemon(ctx, rp); err != nil {
		return "daemon SIGKILL", err
	}
	return fmt.Sprintf("daemon SIGKILL, restarted and consuming after %v", time.Since(killed).Round(time.Millisecond)), nil
}

// killNoted SIGKILLs a replica's daemon and notes, just after, which Controller each live
// session has: the dead daemon's in its sessions (see blindExit). It returns when the kill was.
func (h *harness) killNoted(ctx context.Context, rp *replica) (time.Time, error) {
	if err := h.killDaemon(rp); err != nil {
		return time.Time{}, err
	}
	killed := time.Now()
	h.noteOwnerDied(rp.member, killed)
	k := daemonKill{at: killed, member: rp.member, controllers: make(map[string]string)}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	sessions, err := h.ctl.Sessions(cctx)
	cancel()
	if err != nil {
		return killed, fmt.Errorf("listing sessions after the kill: %w", err)
	}
	for _, s := range sessions {
		if id := s.Controller(); s.Live && id != "" {
			k.controllers[s.Token] = id
		}
	}
	h.faultMu.Lock()
	h.kills = append(h.kills, k)
	h.faultMu.Unlock()
	return killed, nil
}

// faultNode kills the node that holds the most sessions the daemon is Controller of, keeps it
// down for opt.nodeDown (longer than the daemon's lost_after) and restarts it, empty.
func (h *harness) faultNode(ctx context.Context) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	sessions, err := h.ctl.Sessions(cctx)
	if err != nil {
		return "node kill", err
	}
	nodes, err := h.ctl.Nodes(cctx)
	if err != nil {
		return "node kill", err
	}
	count := make(map[string]int)
	for _, s := range sessions {
		if s.Live && slices.ContainsFunc(s.Users, func(u control.User) bool { return u.Role == 3 }) {
			count[s.Node]++
		}
	}
	victim := nodes[0].Name
	for _, n := range nodes {
		if count[n.Name] > count[victim] {
			victim = n.Name
		}
	}
	res, err := h.ctl.Kill(cctx, victim)
	if err != nil {
		return "node kill " + victim, err
	}
	h.faultMu.Lock()
	for _, tok := range res.Ended {
		h.touched[tok] = true
	}
	h.faultMu.Unlock()
	select {
	case <-time.After(h.opt.nodeDown):
	case <-ctx.Done():
		return "node kill " + victim, ctx.Err()
	}
	if _, err := h.ctl.Restart(cctx, victim); err != nil {
		return "node kill " + victim, err
	}
	return fmt.Sprintf("%s killed (%d live sessions ended, %d with the daemon as Controller), restarted after %v", victim, len(res.Ended), count[victim], h.opt.nodeDown), nil
}

// faultNATS SIGKILLs a NATS server (the only one, or one node of the cluster) and starts it
// again on the same ports and store; a cluster node is back once it has joined the others again.
func (h *harness) faultNATS(ctx context.Context, n *natsNode) (string, error) {
	what := "NATS SIGKILL"
	if n.name != "" {
		what = "NATS node " + n.name + " SIGKILL"
	}
	if err := n.proc.Kill(); err != nil {
		return what, err
	}
	select {
	case <-time.After(h.opt.natsDown):
	case <-ctx.Done():
		return what, ctx.Err()
	}
	began := time.Now()
	if err := h.startNATS(ctx, n); err != nil {
		return what, err
	}
	back := "store recovered"
	if n.name != "" {
		back = "store recovered, rejoined the cluster"
	}
	return fmt.Sprintf("%s, down %v, back (%s) in %v", what, h.opt.natsDown, back, time.Since(began).Round(time.Millisecond)), nil
}

// mask shows a session token by its last three digits, as the daemon does.
func mask(tok string) string {
	if len(tok) <= 6 {
		return "******"
	}
	return "******" + tok[len(tok)-3:]
}
