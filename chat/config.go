package chat

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Defaults for Config.
const (
	DefaultStream        = "CC_INBOUND"
	DefaultDurable       = "cobrowse-connector"
	DefaultMaxPayload    = 64 * 1024
	DefaultAckWait       = 30 * time.Second
	DefaultMaxDeliver    = 6
	DefaultMaxAckPending = 20000
	DefaultFetchBatch    = 2000
	// DuplicateWindow is the duplicate window of a stream this package creates: publishers that
	// set Nats-Msg-Id are deduplicated within it.
	DuplicateWindow = 2 * time.Minute
)

// DefaultBackoff is the default redelivery ladder: the server waits Backoff[n-1] after delivery n
// before it redelivers an unsettled message (the last value repeats).
func DefaultBackoff() []time.Duration {
	return []time.Duration{time.Second, 5 * time.Second, 15 * time.Second, 30 * time.Second, 60 * time.Second}
}

// DefaultTriggerRoles are the roles whose start message triggers a co-browse join by default.
func DefaultTriggerRoles() []Role { return []Role{RoleCustomer, RoleBot, RoleSystem} }

// Config configures the inbound consumer. The zero value of every field means its default.
type Config struct {
	// Prefix is the subject prefix: <Prefix>.chat.*.message and <Prefix>.interaction.*.event.
	// Default "cc".
	Prefix string
	// Stream is the name of the stream created when no stream captures the inbound subjects yet.
	// An existing stream that captures them is used whatever its name. Default "CC_INBOUND".
	Stream string
	// Durable is the name of the durable pull consumer the previous release read the stream with;
	// the first start of this release drains it and deletes it. Default "cobrowse-connector".
	Durable string
	// Group is the partitioned consumer group's name (its stream is <Stream>-<Group>). Default
	// "cobrowse".
	Group string
	// Member is this replica's stable member name in the group; instances of one name stand by
	// for each other. Default "main".
	Member string
	// Partitions is the group's partition count, fixed when the group is created. Default 16.
	Partitions int
	// PinnedTTL is how long the server keeps a member's partitions for an instance that stopped
	// pulling, before another instance of the member name may take them. Default 10s.
	PinnedTTL time.Duration
	// MaxPayload is the largest accepted payload in bytes; larger ones are terminated as
	// malformed. Default 64 KiB.
	MaxPayload int
	// AckWait is how long the daemon may work on one delivery, from its hand-over to the handler
	// (or from the handler's last Delivery.InProgress), before the consumer stops extending it and
	// lets the server redeliver it. It is also the consumer's AckWait on the server, which the
	// server replaces by Backoff[0] when a Backoff is set. Default 30s.
	AckWait time.Duration
	// MaxDeliver is how many times a message is delivered at most; -1 is unlimited. Default 6.
	MaxDeliver int
	// Backoff is the server's redelivery ladder for unsettled messages: after delivery n the
	// server waits Backoff[n-1] (the last value repeats) before it redelivers. len(Backoff) must not
	// exceed MaxDeliver. nil means DefaultBackoff (1s, 5s, 15s, 30s, 60s); a non-nil empty slice
	// means none (AckWait alone).
	Backoff []time.Duration
	// MaxAckPending caps the deliveries handed out and not yet settled; -1 is unlimited.
	// Default 20000.
	MaxAckPending int
	// FetchBatch is the largest number of messages pulled, and held ahead of the handler, at once.
	// Default 2000. The pull loop hands each message over as it comes when nothing is queued
	// ahead of it, so the next pull goes out when the last one ends, and each pull costs a round
	// trip in which the server hands out nothing: 2000 drained the load harness's backlog 8 %
	// faster than 500 in one sitting (20 drains each, alternated), alike in a later one (500,
	// 1,000 and 2,000 within the noise), while 8,000 was slower (more messages waiting, colder, in
	// the client; docs/scaling.md). 500 had drained it 15-25 % faster than 100. What a stopping
	// pull loop did not hand over is nakked, not left to the ack wait.
	FetchBatch int
	// MaxAge is the age limit of the stream when NewConsumer creates it; an existing stream keeps
	// its own. 0: no limit.
	MaxAge time.Duration
	// Replicas is the replica count of the stream when NewConsumer creates it (3 on a cluster);
	// an existing stream keeps its own. 1 to 5; default 1.
	Replicas int
	// TriggerRoles are the roles whose start message sets Inbound.StartToken. nil means
	// DefaultTriggerRoles (customer, bot, system); a non-nil empty slice means none.
	TriggerRoles []Role
	// Logger receives the package's logs, scoped with component=chat. Default slog.Default().
	Logger *slog.Logger
	// Metrics, when set, count the inbound messages by kind and outcome (see Metrics). Nil: none.
	Metrics *Metrics
}

// DefaultConfig is the zero Config with every default filled in: what each zero field means.
func DefaultConfig() Config {
	cfg, _ := Config{}.withDefaults() // the zero Config is valid
	return cfg
}

// withDefaults returns cfg with defaults filled in, or an error naming the first invalid field.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if cfg.Stream == "" {
		cfg.Stream = DefaultStream
	}
	if cfg.Durable == "" {
		cfg.Durable = DefaultDurable
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	if cfg.Group == "" {
		cfg.Group = DefaultGroup
	}
	if cfg.Member == "" {
		cfg.Member = DefaultMember
	}
	if cfg.Partitions == 0 {
		cfg.Partitions = DefaultPartitions
	}
	if cfg.PinnedTTL == 0 {
		cfg.PinnedTTL = DefaultPinnedTTL
	}
	if cfg.Replicas < 1 || cfg.Replicas > 5 {
		return cfg, fmt.Errorf("chat: config: replicas %d is not between 1 and 5", cfg.Replicas)
	}
	if cfg.MaxPayload == 0 {
		cfg.MaxPayload = DefaultMaxPayload
	}
	if cfg.AckWait == 0 {
		cfg.AckWait = DefaultAckWait
	}
	if cfg.MaxDeliver == 0 {
		cfg.MaxDeliver = DefaultMaxDeliver
	}
	if cfg.Backoff == nil {
		cfg.Backoff = DefaultBackoff()
	} else {
		cfg.Backoff = append([]time.Duration{}, cfg.Backoff...)
	}
	if cfg.MaxAckPending == 0 {
		cfg.MaxAckPending = DefaultMaxAckPending
	}
	if cfg.FetchBatch == 0 {
		cfg.FetchBatch = DefaultFetchBatch
	}
	if cfg.TriggerRoles == nil {
		cfg.TriggerRoles = DefaultTriggerRoles()
	} else {
		cfg.TriggerRoles = append([]Role{}, cfg.TriggerRoles...)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}

	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if !validPrefix(cfg.Prefix) {
		bad("chat: prefix %q: want dot-separated tokens without wildcards or spaces", cfg.Prefix)
	}
	if !validName(cfg.Stream) {
		bad("chat: stream %q: want a name without '.', '*', '>' or spaces", cfg.Stream)
	}
	if !validName(cfg.Durable) {
		bad("chat: durable %q: want a name without '.', '*', '>' or spaces", cfg.Durable)
	}
	if !validName(cfg.Group) {
		bad("chat: group %q: want a name without '.', '*', '>' or spaces", cfg.Group)
	}
	if !validMember(cfg.Member) {
		bad("chat: member %q: want 1 to 64 letters, digits, '-' or '_'", cfg.Member)
	}
	if cfg.Partitions < 1 || cfg.Partitions > MaxPartitions {
		bad("chat: partitions %d: want 1 to %d", cfg.Partitions, MaxPartitions)
	}
	if cfg.PinnedTTL < time.Second {
		bad("chat: pinned ttl %v: want at least 1s", cfg.PinnedTTL)
	}
	if cfg.MaxPayload < 0 {
		bad("chat: max payload %d: want > 0", cfg.MaxPayload)
	}
	if cfg.AckWait < 0 {
		bad("chat: ack wait %v: want > 0", cfg.AckWait)
	}
	if cfg.MaxDeliver < -1 {
		bad("chat: max deliver %d: want > 0, or -1 for unlimited", cfg.MaxDeliver)
	}
	for _, b := range cfg.Backoff {
		if b <= 0 {
			bad("chat: backoff %v: want every value > 0", cfg.Backoff)
			break
		}
	}
	// The server's rule (nats-server, server/consumer.go): more backoff steps than MaxDeliver are
	// refused, any number with MaxDeliver -1 (unlimited). configs checks nats.inbound.backoff the
	// same way.
	if cfg.MaxDeliver > 0 && len(cfg.Backoff) > cfg.MaxDeliver {
		bad("chat: backoff has %d values: want at most max deliver (%d)", len(cfg.Backoff), cfg.MaxDeliver)
	}
	if cfg.MaxAckPending < -1 {
		bad("chat: max ack pending %d: want > 0, or -1 for unlimited", cfg.MaxAckPending)
	}
	if cfg.FetchBatch < 0 {
		bad("chat: fetch batch %d: want > 0", cfg.FetchBatch)
	}
	for _, r := range cfg.TriggerRoles {
		if !r.Valid() {
			bad("chat: trigger role %q: want customer, agent, bot or system", r)
		}
	}
	return cfg, errors.Join(errs...)
}

func validPrefix(p string) bool {
	for tok := range strings.SplitSeq(p, ".") {
		if !validName(tok) {
			return false
		}
	}
	return true
}

func validName(s string) bool {
	return s != "" && !strings.ContainsAny(s, ".*> \t\r\n\f\v")
}

// deadlineFor is the server's ack deadline for the given delivery attempt: Backoff[attempt-1]
// (the last value repeating) when a backoff is set, AckWait otherwise.
func deadlineFor(ackWait time.Duration, backoff []time.Duration, attempt int) time.Duration {
	if len(backoff) == 0 {
		return ackWait
	}
	i := min(max(attempt-1, 0), len(backoff)-1)
	return backoff[i]
}
