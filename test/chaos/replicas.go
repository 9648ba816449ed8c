package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/chat"
	"github.com/cobrowse-connector/cobrowse-connector/test/procs"
)

// Replicas mode (-mode replicas): three daemons, members r1, r2 and r3 of the inbound stream's
// partitioned consumer group, on a 3-node NATS cluster. The harness is the operator: it changes
// the membership with the built binary's `cluster` command, as docs/replicas.md tells one to, and
// keeps a record of who owned which partition when, from the status the command prints, to count
// the interactions that changed owner while in flight (moved).

const (
	modeSingle   = "single"
	modeReplicas = "replicas"
)

// pinnedTTL is the replicas' cluster.pinned_ttl: short, so that a killed member restarted takes
// its partitions back within seconds (the default 10s would stall its interactions that long).
const pinnedTTL = 2 * time.Second

// partitionCount is the group's partition count: the daemon's default, which the configs keep.
// An interaction's owner is the member of its partition, chat.Partition(id, partitionCount).
const partitionCount = 16

// ownerChange is a moment the owner of some interactions changed: a replica's process died
// (died names its member), or the membership moved partitions (owners is the member of each
// partition after the change).
type ownerChange struct {
	at     time.Time
	died   string
	owners []string
}

// noteOwners records the partitions' owners from a status the cluster command printed.
func (h *harness) noteOwners(st chat.GroupStatus, at time.Time) {
	owners := make([]string, st.Partitions)
	for _, m := range st.Members {
		for _, p := range m.Partitions {
			if p >= 0 && p < len(owners) {
				owners[p] = m.Name
			}
		}
	}
	h.faultMu.Lock()
	h.owners = append(h.owners, ownerChange{at: at, owners: owners})
	h.faultMu.Unlock()
}

// noteOwnerDied records that a replica's process died (a SIGKILL, or an exit on its own).
func (h *harness) noteOwnerDied(member string, at time.Time) {
	if member == "" {
		return // single mode: nobody else could own anything
	}
	h.faultMu.Lock()
	h.owners = append(h.owners, ownerChange{at: at, died: member})
	h.faultMu.Unlock()
}

// partsOf are the partitions the membership gives member now.
func (h *harness) partsOf(member string) []int {
	h.faultMu.Lock()
	defer h.faultMu.Unlock()
	var out []int
	for i := len(h.owners) - 1; i >= 0; i-- {
		if o := h.owners[i].owners; o != nil {
			for p, m := range o {
				if m == member {
					out = append(out, p)
				}
			}
			return out
		}
	}
	return nil
}

// ownerAt is the member that owned partition part at t ("" before the group had members).
func ownerAt(changes []ownerChange, part int, t time.Time) string {
	owner := ""
	for _, c := range changes {
		if c.at.After(t) {
			break
		}
		if c.owners != nil {
			owner = c.owners[part]
		}
	}
	return owner
}

// movedWhile reports whether an interaction of partition part, in flight from begun to end
// (zero: still open when the faults were over), changed owner meanwhile: its partition went to
// another member, or the process of the member that owned it died. changes are in time order.
func movedWhile(changes []ownerChange, part int, begun, end time.Time) bool {
	owner := ""
	for _, c := range changes {
		inFlight := c.at.After(begun) && (end.IsZero() || c.at.Before(end))
		switch {
		case c.owners != nil:
			if inFlight && c.owners[part] != owner {
				return true
			}
			owner = c.owners[part]
		case inFlight && c.died == owner:
			return true
		}
	}
	return false
}

// ownerChanges is the ownership record in time order.
func (h *harness) ownerChanges() []ownerChange {
	h.faultMu.Lock()
	defer h.faultMu.Unlock()
	out := slices.Clone(h.owners)
	slices.SortStableFunc(out, func(a, b ownerChange) int { return a.at.Compare(b.at) })
	return out
}

// cluster runs `cobrowse-connector cluster --config FILE ACTION MEMBER...` with the built binary
// and returns the group status it prints.
func (h *harness) cluster(ctx context.Context, action string, members ...string) (chat.GroupStatus, error) {
	var st chat.GroupStatus
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	args := append([]string{"cluster", "--config", h.replicas[0].configPath, action}, members...)
	what := "cobrowse-connector " + strings.Join(append([]string{"cluster", action}, members...), " ")
	cmd := exec.CommandContext(cctx, h.bin.daemon, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := procs.Start(cmd); err != nil { // through the spawner: a parent-death signal too
		return st, fmt.Errorf("%s: %w", what, err)
	}
	if err := cmd.Wait(); err != nil {
		return st, fmt.Errorf("%s: %v: %s", what, err, strings.TrimSpace(stderr.String()))
	}
	if err := json.Unmarshal(stdout.Bytes(), &st); err != nil {
		return st, fmt.Errorf("%s printed no group status: %v: %q", what, err, stdout.String())
	}
	h.verbosef("%s: %s", what, summary(st))
	return st, nil
}

// summary is a group status in one line: each member's partitions.
func summary(st chat.GroupStatus) string {
	var parts []string
	for _, m := range st.Members {
		parts = append(parts, fmt.Sprintf("%s%v", m.Name, m.Partitions))
	}
	if len(st.Unassigned) > 0 {
		parts = append(parts, fmt.Sprintf("unassigned%v", st.Unassigned))
	}
	return strings.Join(parts, " ")
}

// membership adds or removes members as an operator does, records the new owners and returns
// the status. A command that failed (a stream electing its leader after a NATS node came back)
// is run again, unless the status shows the change made.
func (h *harness) membership(ctx context.Context, action string, members ...string) (chat.GroupStatus, error) {
	deadline := time.Now().Add(procs.Wait)
	for {
		st, err := h.cluster(ctx, action, members...)
		if err == nil && st.Partitions != partitionCount {
			return st, fmt.Errorf("the group has %d partitions, the configs %d", st.Partitions, partitionCount)
		}
		if err == nil {
			h.noteOwners(st, time.Now())
			return st, nil
		}
		if now, serr := h.cluster(ctx, "status"); serr == nil && madeChange(now, action, members) {
			h.noteOwners(now, time.Now())
			return now, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return st, err
		}
		h.notef("%v; trying again", err)
		select {
		case <-time.After(500 * time.Millisecond):
		case <-ctx.Done():
			return st, ctx.Err()
		}
	}
}

// madeChange: the status shows the members added (with partitions) or gone.
func madeChange(st chat.GroupStatus, action string, members []string) bool {
	for _, name := range members {
		i := slices.IndexFunc(st.Members, func(m chat.MemberStatus) bool { return m.Name == name })
		if (action == "add") != (i >= 0 && len(st.Members[i].Partitions) > 0) {
			return false
		}
	}
	return true
}

// replicaOf is the replica of a member.
func (h *harness) replicaOf(member string) *replica {
	for _, rp := range h.replicas {
		if rp.member == member {
			return rp
		}
	}
	return nil
}

// awaitTakenUp waits until every member of st runs and has said it acts for the partitions st
// gives it: the old owners let go of the partitions moved, the new ones took up their live
// sessions.
func (h *harness) awaitTakenUp(ctx context.Context, st chat.GroupStatus) error {
	for _, m := range st.Members {
		rp := h.replicaOf(m.Name)
		if rp == nil {
			return fmt.Errorf("the group has a member %s the harness did not start", m.Name)
		}
		r := rp.current()
		if r == nil {
			return fmt.Errorf("%s is not running", rp.name())
		}
		if err := r.await(ctx, procs.Wait, func() bool { return slices.Equal(r.parts, m.Partitions) }); err != nil {
			return fmt.Errorf("%s did not take up its partitions %v: %w", rp.name(), m.Partitions, err)
		}
	}
	return nil
}

// startReplicas brings the replicas up as an operator would: r1 alone makes the group, with
// itself its only member; `cluster add r2 r3` gives the others partitions (r1 lets go of them);
// then r2 and r3 start and take theirs up.
func (h *harness) startReplicas(ctx context.Context) error {
	first, others := h.replicas[0], h.replicas[1:]
	r, err := h.startDaemon(ctx, first)
	if err != nil {
		return err
	}
	if err := r.await(ctx, procs.Wait, func() bool { return len(r.parts) == partitionCount }); err != nil {
		return fmt.Errorf("%s did not take up the new group's %d partitions: %w", first.name(), partitionCount, err)
	}
	var names []string
	for _, rp := range others {
		names = append(names, rp.member)
	}
	st, err := h.membership(ctx, "add", names...)
	if err != nil {
		return err
	}
	for _, rp := range others {
		if _, err := h.startDaemon(ctx, rp); err != nil {
			return err
		}
	}
	if err := h.awaitTakenUp(ctx, st); err != nil {
		return err
	}
	h.notef("replicas up: %s", summary(st))
	return nil
}

// faultReplica SIGKILLs a replica. Then, when move is false (a), it is started again at once
// under the same name and takes its partitions back once the dead instance's pin lapses
// (cluster.pinned_ttl). When move is true (b), once the server sees it dead (no pin, no pull
// waiting) the operator removes it from the group, so that its partitions move to the others at
// once; then it is started again, says it has no partitions, and is added back.
func (h *harness) faultReplica(ctx context.Context, rp *replica, move bool) (string, error) {
	what := rp.member + " SIGKILL"
	killed, err := h.killNoted(ctx, rp)
	if err != nil {
		return what, err
	}
	since := func() time.Duration { return time.Since(killed).Round(time.Millisecond) }
	if !move {
		r, err := h.startDaemon(ctx, rp)
		if err != nil {
			return what, err
		}
		want := h.partsOf(rp.member)
		if err := r.await(ctx, procs.Wait, func() bool { return slices.Equal(r.parts, want) }); err != nil {
			return what, fmt.Errorf("%s restarted did not take its partitions %v back: %w", rp.name(), want, err)
		}
		return fmt.Sprintf("%s, restarted under the same name, its partitions %v taken back after %v", what, want, since()), nil
	}

	if err := h.awaitDead(ctx, rp.member); err != nil {
		return what, err
	}
	dead := since()
	st, err := h.membership(ctx, "remove", rp.member)
	if err != nil {
		return what, err
	}
	if err := h.awaitTakenUp(ctx, st); err != nil {
		return what, err
	}
	movedAway := since()
	r, err := h.startDaemon(ctx, rp)
	if err != nil {
		return what, err
	}
	if err := r.await(ctx, procs.Wait, func() bool { return r.idle }); err != nil {
		return what, fmt.Errorf("%s restarted outside the group did not say it has no partitions: %w", rp.name(), err)
	}
	st, err = h.membership(ctx, "add", rp.member)
	if err != nil {
		return what, err
	}
	if err := h.awaitTakenUp(ctx, st); err != nil {
		return what, err
	}
	return fmt.Sprintf("%s, seen dead after %v, removed (its partitions taken up by the others after %v), restarted, added back and its partitions %v taken up after %v; now %s",
		what, dead, movedAway, h.partsOf(rp.member), since(), summary(st)), nil
}

// awaitDead polls the group's status until the server sees no instance of member: no pin, no
// pull request waiting. Only then does `cluster remove` delete the dead member's consumer, so
// that its partitions move at once (with the pin still held, they would wait for the consumer's
// inactivity threshold, a minute).
func (h *harness) awaitDead(ctx context.Context, member string) error {
	deadline := time.Now().Add(10*pinnedTTL + 10*time.Second)
	var last string
	for {
		st, err := h.cluster(ctx, "status")
		if err == nil {
			i := slices.IndexFunc(st.Members, func(m chat.MemberStatus) bool { return m.Name == member })
			if i < 0 {
				return fmt.Errorf("%s is not a member of the group: %s", member, summary(st))
			}
			m := st.Members[i]
			if !m.Pinned && m.Waiting == 0 {
				return nil
			}
			last = fmt.Sprintf("pinned %v, %d pulls waiting", m.Pinned, m.Waiting)
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the server still sees %s alive after its kill (%s)", member, last)
		}
		select {
		case <-time.After(250 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// countMoved counts, in replicas mode, the interactions that changed owner while in flight: from
// their first message to what settled them (their final attach or a failed event).
func (h *harness) countMoved() int {
	changes := h.ownerChanges()
	moved := 0
	h.obs.mu.Lock()
	defer h.obs.mu.Unlock()
	for _, it := range h.inters {
		if !it.startAcked || it.begunAt.IsZero() {
			continue
		}
		end := h.obs.byIID[it.id].settledAt(it.sess.HistoryID)
		if movedWhile(changes, chat.Partition(it.id, partitionCount), it.begunAt, end) {
			moved++
		}
	}
	return moved
}

// ownedBy: the kill k was of the process that owned the interaction then (always so in single
// mode, with one daemon).
func (h *harness) ownedBy(it *interaction, k daemonKill, changes []ownerChange) bool {
	if k.member == "" {
		return true
	}
	return ownerAt(changes, chat.Partition(it.id, partitionCount), k.at) == k.member
}
