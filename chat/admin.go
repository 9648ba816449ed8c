package chat

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/pcgroups"
)

// apiWait bounds one JetStream API request of an operator's action. In a cluster only a
// consumer's leader answers its info: while the consumer has none (it is being deleted, or elects
// one) nobody answers at all, and nats.go applies its own time-out only to a context without a
// deadline, so a request under the caller's long deadline (the command's) would wait all of it.
// Reads are asked again, at most readTries times; a write is tried once (whether a write that
// timed out took effect is unknown: the status that follows it, or the operator's next status,
// tells).
const (
	apiWait   = 5 * time.Second
	readTries = 3
)

// read runs one JetStream read with a bound per attempt, asking again after a time-out while ctx
// lasts.
func read[T any](ctx context.Context, f func(context.Context) (T, error)) (T, error) {
	for try := 1; ; try++ {
		actx, cancel := context.WithTimeout(ctx, apiWait)
		v, err := f(actx)
		cancel()
		if err == nil || try == readTries || ctx.Err() != nil || !timedOut(err) {
			return v, err
		}
	}
}

// write runs one JetStream write (it may be several requests) with a bound.
func write(ctx context.Context, f func(context.Context) error) error {
	actx, cancel := context.WithTimeout(ctx, 2*apiWait)
	defer cancel()
	return f(actx)
}

func timedOut(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout)
}

// groupConfig reads the group's membership.
func groupConfig(ctx context.Context, js jetstream.JetStream, stream, group string) (*pcgroups.ElasticConsumerGroupConfig, error) {
	return read(ctx, func(ctx context.Context) (*pcgroups.ElasticConsumerGroupConfig, error) {
		return pcgroups.GetElasticConsumerGroupConfig(ctx, js, stream, group)
	})
}

// Group is an operator's handle on the consumer group: its status, and membership changes. The
// replicas follow the membership by themselves (a member removed lets go of its partitions, the
// members that gain them take them up once it did); nothing else changes it.
type Group struct {
	js         jetstream.JetStream
	stream     string
	name       string
	partitions int
}

// ErrNoGroup is returned by OpenGroup when no daemon has made the group yet.
var ErrNoGroup = errors.New("chat: the consumer group does not exist yet (the first replica to start makes it)")

// OpenGroup finds the group of the configuration (the inbound stream by its subjects, as the
// daemon does) without creating anything.
func OpenGroup(ctx context.Context, js jetstream.JetStream, cfg Config) (*Group, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	c := &Consumer{js: js, cfg: cfg, chatSubj: cfg.Prefix + ".chat.*.message", evSubj: cfg.Prefix + ".interaction.*.event", sigSubj: cfg.Prefix + ".signal.*.*"}
	type lookup struct {
		stream string
		found  bool
	}
	l, err := read(ctx, func(ctx context.Context) (lookup, error) {
		stream, _, found, err := c.findStream(ctx)
		return lookup{stream, found}, err
	})
	stream, found := l.stream, l.found
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, ErrNoGroup
	}
	g := &Group{js: js, stream: stream, name: cfg.Group, partitions: cfg.Partitions}
	if _, err := groupConfig(ctx, js, stream, cfg.Group); err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrBucketNotFound) || strings.Contains(err.Error(), "doesn't exist") {
			return nil, ErrNoGroup
		}
		return nil, fmt.Errorf("chat: consumer group %s: %w", cfg.Group, err)
	}
	return g, nil
}

// GroupStatus is the group as the server holds it.
type GroupStatus struct {
	Group      string         `json:"group"`
	Stream     string         `json:"stream"`
	Partitions int            `json:"partitions"`
	Members    []MemberStatus `json:"members"`
	// Unassigned are the partitions no member has (no members at all).
	Unassigned []int `json:"unassigned,omitempty"`
}

// MemberStatus is one member: its partitions and its consumer's state.
type MemberStatus struct {
	Name       string `json:"name"`
	Partitions []int  `json:"partitions"`
	// Consuming: the member's consumer exists with the member's current partitions.
	Consuming bool `json:"consuming"`
	// Pinned: an instance of the member holds the partitions (it pulled within the pinned TTL,
	// after a message).
	Pinned bool `json:"pinned"`
	// Waiting is the count of pull requests waiting: a live instance keeps at least one.
	Waiting    int    `json:"waiting"`
	Pending    uint64 `json:"pending"`
	AckPending int    `json:"ack_pending"`
	// Error: the consumer's state could not be read (the fields above are then unknown).
	Error string `json:"error,omitempty"`
}

// Status reads the membership and each member's consumer.
func (g *Group) Status(ctx context.Context) (GroupStatus, error) {
	cfg, err := groupConfig(ctx, g.js, g.stream, g.name)
	if err != nil {
		return GroupStatus{}, fmt.Errorf("chat: consumer group %s: %w", g.name, err)
	}
	st := GroupStatus{Group: g.name, Stream: GroupStreamName(g.stream, g.name), Partitions: int(cfg.MaxMembers)}
	names := slices.Clone(cfg.Members)
	for _, m := range cfg.MemberMappings {
		names = append(names, m.Member)
	}
	slices.Sort(names)
	names = slices.Compact(names)
	assigned := make(parts, cfg.MaxMembers)
	for _, name := range names {
		p, filters := memberParts(*cfg, name)
		ms := MemberStatus{Name: name, Partitions: p.list()}
		for _, i := range ms.Partitions {
			assigned[i] = true
		}
		info, err := g.consumerInfo(ctx, st.Stream, name)
		switch {
		case err == nil:
			ms.Consuming = slices.Equal(info.Config.FilterSubjects, consumerFilters(p, filters))
			ms.Pinned = pinnedElsewhere(info, "") != ""
			ms.Waiting, ms.Pending, ms.AckPending = info.NumWaiting, info.NumPending, info.NumAckPending
		case !errors.Is(err, jetstream.ErrConsumerNotFound):
			// Not "no consumer": the server did not say (a consumer without a leader does not
			// answer). Shown, rather than taken for a member that does not consume.
			ms.Error = "consumer info: " + err.Error()
		}
		st.Members = append(st.Members, ms)
	}
	for i, ok := range assigned {
		if !ok {
			st.Unassigned = append(st.Unassigned, i)
		}
	}
	return st, nil
}

// consumerInfo reads a member's consumer.
func (g *Group) consumerInfo(ctx context.Context, stream, member string) (*jetstream.ConsumerInfo, error) {
	return read(ctx, func(ctx context.Context) (*jetstream.ConsumerInfo, error) {
		cons, err := g.js.Consumer(ctx, stream, member)
		if err != nil {
			return nil, err
		}
		return cons.CachedInfo(), nil
	})
}

// Add adds members; the members that give up partitions to them let go of them first.
func (g *Group) Add(ctx context.Context, members ...string) error {
	if err := validMembers(members); err != nil {
		return err
	}
	if err := write(ctx, func(ctx context.Context) error {
		_, err := pcgroups.AddMembers(ctx, g.js, g.stream, g.name, members)
		return err
	}); err != nil {
		return fmt.Errorf("chat: add %s to the consumer group %s: %w", strings.Join(members, ", "), g.name, err)
	}
	return nil
}

// Remove removes members. A removed member that still runs lets go of its partitions itself; one
// that is gone (no pull request waiting, no pin) has its consumer deleted here, so that its
// partitions move at once instead of after the server's inactivity threshold. Removing every
// member is refused: nobody would read the inbound stream.
func (g *Group) Remove(ctx context.Context, members ...string) error {
	if err := validMembers(members); err != nil {
		return err
	}
	cfg, err := groupConfig(ctx, g.js, g.stream, g.name)
	if err != nil {
		return fmt.Errorf("chat: consumer group %s: %w", g.name, err)
	}
	left := slices.DeleteFunc(slices.Clone(cfg.Members), func(m string) bool { return slices.Contains(members, m) })
	if len(left) == 0 {
		return fmt.Errorf("chat: removing %s would leave the consumer group %s without members: add another member first", strings.Join(members, ", "), g.name)
	}
	if err := write(ctx, func(ctx context.Context) error {
		_, err := pcgroups.DeleteMembers(ctx, g.js, g.stream, g.name, members)
		return err
	}); err != nil {
		return fmt.Errorf("chat: remove %s from the consumer group %s: %w", strings.Join(members, ", "), g.name, err)
	}
	stream := GroupStreamName(g.stream, g.name)
	for _, m := range members {
		// A member whose consumer cannot be read is left to the replicas: the member that gains
		// its partitions deletes the consumer of a removed member that nobody uses.
		info, err := g.consumerInfo(ctx, stream, m)
		if err != nil {
			continue
		}
		if idleInfo(info, "") {
			if err := write(ctx, func(ctx context.Context) error { return g.js.DeleteConsumer(ctx, stream, m) }); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
				return fmt.Errorf("chat: delete the consumer of the removed member %s: %w", m, err)
			}
		}
	}
	return nil
}

// StepDown unpins the member's active instance: another instance of the member takes the
// partitions (with a message of them), or the same one again.
func (g *Group) StepDown(ctx context.Context, member string) error {
	if err := validMembers([]string{member}); err != nil {
		return err
	}
	if err := write(ctx, func(ctx context.Context) error {
		return pcgroups.ElasticMemberStepDown(ctx, g.js, g.stream, g.name, member)
	}); err != nil {
		return fmt.Errorf("chat: step down member %s: %w", member, err)
	}
	return nil
}

func validMembers(members []string) error {
	if len(members) == 0 {
		return errors.New("chat: name at least one member")
	}
	for _, m := range members {
		if !validMember(m) {
			return fmt.Errorf("chat: member %q: want 1 to 64 letters, digits, '-' or '_'", m)
		}
	}
	return nil
}

// validMember: a member names its consumer, and pod names (StatefulSet) fit.
func validMember(m string) bool {
	if m == "" || len(m) > 64 {
		return false
	}
	for _, r := range m {
		if (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') && r != '-' && r != '_' {
			return false
		}
	}
	return true
}
