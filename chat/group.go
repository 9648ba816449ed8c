package chat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/pcgroups"
)

// Ownership between replicas: the inbound stream is consumed through an elastic partitioned
// consumer group (the layout of github.com/synadia-io/orbit.go/pcgroups, so that its tools read
// and change it). The group's own work-queue stream, <stream>-<group>, sources the inbound subjects
// with the partition of the interaction id (token 3 of every inbound subject) put in front of the
// subject. Each member (cluster.member) reads the partitions the group's membership assigns it
// through one consumer named after it, on the server's pinned-client priority group, so that of
// several instances of one member name exactly one is handed messages.
//
// Membership lives in the KV bucket pcgroups uses, under <stream>.<group>; it is created with
// this member as its only member, and changed only by an operator (cobrowse-connector cluster).

// Defaults of the group settings.
const (
	DefaultGroup      = "cobrowse"
	DefaultMember     = "main"
	DefaultPartitions = 16
	DefaultPinnedTTL  = 10 * time.Second
	// MaxPartitions bounds the partition count: each partition adds three filter subjects to a
	// member's consumer.
	MaxPartitions = 1024
)

// GroupBucket is the KV bucket that holds the groups' membership; pcgroups' own name, so that
// pcgroups' functions and tools work on the daemon's group.
const GroupBucket = "elastic-consumer-groups"

// priorityGroup is the priority group of a member's consumer (pcgroups' name).
const priorityGroup = "PCG"

// Partition is the partition of an interaction among n: the server's partition() subject
// transform, FNV-1a (32 bit) of the interaction id modulo n. TestPartitionIsTheServers checks it
// against the server's own mapping.
func Partition(interactionID string, n int) int {
	if n <= 1 {
		return 0
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(interactionID))
	return int(h.Sum32() % uint32(n))
}

// GroupStreamName is the name of the group's work-queue stream (pcgroups' naming).
func GroupStreamName(stream, group string) string { return stream + "-" + group }

// GroupKey is the key of the group's membership in GroupBucket (pcgroups' naming).
func GroupKey(stream, group string) string { return stream + "." + group }

// partitioningFilters are the group's filters: the three inbound subjects, partitioned by their
// one wildcard, the interaction id.
func partitioningFilters(prefix string) []pcgroups.PartitioningFilter {
	return []pcgroups.PartitioningFilter{
		{Filter: prefix + ".chat.*.message", PartitioningWildcards: []int{1}},
		{Filter: prefix + ".interaction.*.event", PartitioningWildcards: []int{1}},
		{Filter: prefix + ".signal.*.*", PartitioningWildcards: []int{1}},
	}
}

// partitionTransforms are the group stream's source transforms: "<partition>.<subject>".
func partitionTransforms(prefix string, n int) []jetstream.SubjectTransformConfig {
	var out []jetstream.SubjectTransformConfig
	for _, f := range partitioningFilters(prefix) {
		toks := strings.Split(f.Filter, ".")
		w := 0
		for i, t := range toks {
			if t == "*" {
				w++
				toks[i] = fmt.Sprintf("{{Wildcard(%d)}}", w)
			}
		}
		out = append(out, jetstream.SubjectTransformConfig{
			Source:      f.Filter,
			Destination: fmt.Sprintf("{{Partition(%d,1)}}.%s", n, strings.Join(toks, ".")),
		})
	}
	return out
}

// stripPartition removes the partition token a group stream's subject starts with.
func stripPartition(subject string) string {
	if i := strings.IndexByte(subject, '.'); i >= 0 {
		return subject[i+1:]
	}
	return subject
}

// parts is a set of partitions; nil owns nothing.
type parts []bool

func (p parts) has(i int) bool { return i >= 0 && i < len(p) && p[i] }

func (p parts) list() []int {
	var out []int
	for i, ok := range p {
		if ok {
			out = append(out, i)
		}
	}
	return out
}

func (p parts) equal(o parts) bool { return slices.Equal(p.list(), o.list()) }

// intersect is the set of partitions in both.
func (p parts) intersect(o parts) parts {
	out := make(parts, len(p))
	for i := range p {
		out[i] = p[i] && o.has(i)
	}
	return out
}

func allParts(n int) parts {
	p := make(parts, n)
	for i := range p {
		p[i] = true
	}
	return p
}

// memberParts are the partitions the membership gives member, with the filter subjects of its
// consumer.
func memberParts(cfg pcgroups.ElasticConsumerGroupConfig, member string) (parts, []string) {
	filters := pcgroups.ElasticGetPartitionFilters(cfg, member)
	p := make(parts, cfg.MaxMembers)
	for _, f := range filters {
		head, _, _ := strings.Cut(f, ".")
		if i, err := strconv.Atoi(head); err == nil && i >= 0 && i < len(p) {
			p[i] = true
		}
	}
	return p, filters
}

// decodeGroupConfig reads a membership value as pcgroups writes it.
func decodeGroupConfig(b []byte) (pcgroups.ElasticConsumerGroupConfig, error) {
	var cfg pcgroups.ElasticConsumerGroupConfig
	if err := json.Unmarshal(b, &cfg); err != nil {
		return cfg, fmt.Errorf("the consumer group's membership is not valid JSON: %w", err)
	}
	if cfg.MaxMembers < 1 || cfg.MaxMembers > MaxPartitions {
		return cfg, fmt.Errorf("the consumer group's partition count %d is not between 1 and %d", cfg.MaxMembers, MaxPartitions)
	}
	return cfg, nil
}

// groupBucket opens the membership bucket, creating it if needed.
func groupBucket(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, GroupBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      GroupBucket,
			Description: "partitioned consumer groups' membership",
			Storage:     jetstream.FileStorage,
			Replicas:    replicas,
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = js.KeyValue(ctx, GroupBucket)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("chat: consumer group bucket %s: %w", GroupBucket, err)
	}
	return kv, nil
}

// ensureGroup makes the group's membership (with this member alone, when the group is new) and its
// work-queue stream, sourcing the inbound stream from startSeq (0: its first message). An existing
// group is used if its partition count and filters are this configuration's; otherwise it is an
// error with the reason, since another count would move interactions between partitions.
func (c *Consumer) ensureGroup(ctx context.Context, startSeq uint64) error {
	kv, err := groupBucket(ctx, c.js, c.cfg.Replicas)
	if err != nil {
		return err
	}
	stream := c.StreamName()
	key := GroupKey(stream, c.cfg.Group)
	want := pcgroups.ElasticConsumerGroupConfig{
		MaxMembers:          uint(c.cfg.Partitions),
		PartitioningFilters: partitioningFilters(c.cfg.Prefix),
		Members:             []string{c.cfg.Member},
	}
	b, err := json.Marshal(want)
	if err != nil {
		return err
	}
	switch _, err := kv.Create(ctx, key, b); {
	case err == nil:
		c.log.Info("created the consumer group", "group", c.cfg.Group, "partition_count", c.cfg.Partitions, "member", c.cfg.Member)
	case errors.Is(err, jetstream.ErrKeyExists):
		e, err := kv.Get(ctx, key)
		if err != nil {
			return fmt.Errorf("chat: consumer group %s: %w", c.cfg.Group, err)
		}
		have, err := decodeGroupConfig(e.Value())
		if err != nil {
			return fmt.Errorf("chat: consumer group %s: %w", c.cfg.Group, err)
		}
		if int(have.MaxMembers) != c.cfg.Partitions {
			return fmt.Errorf("chat: consumer group %s was created with %d partitions, cluster.partitions is %d: the partition count is fixed when the group is created (set cluster.partitions to %d)",
				c.cfg.Group, have.MaxMembers, c.cfg.Partitions, have.MaxMembers)
		}
		if !slices.EqualFunc(have.PartitioningFilters, want.PartitioningFilters, func(a, b pcgroups.PartitioningFilter) bool {
			return a.Filter == b.Filter && slices.Equal(a.PartitioningWildcards, b.PartitioningWildcards)
		}) {
			return fmt.Errorf("chat: consumer group %s partitions other subjects than the inbound ones (%s): it was made for another prefix or by another tool",
				c.cfg.Group, filterList(have.PartitioningFilters))
		}
	default:
		return fmt.Errorf("chat: consumer group %s: %w", c.cfg.Group, err)
	}
	c.mu.Lock()
	c.kv = kv
	c.mu.Unlock()
	return c.ensureGroupStream(ctx, startSeq)
}

func filterList(fs []pcgroups.PartitioningFilter) string {
	var s []string
	for _, f := range fs {
		s = append(s, f.Filter)
	}
	return strings.Join(s, ", ")
}

// ensureGroupStream creates the group's work-queue stream, or checks the existing one: it must be a
// work queue sourcing the inbound stream by partition, or ownership and order would not hold.
func (c *Consumer) ensureGroupStream(ctx context.Context, startSeq uint64) error {
	stream := c.StreamName()
	name := GroupStreamName(stream, c.cfg.Group)
	s, err := c.js.Stream(ctx, name)
	if err == nil {
		if why := groupStreamProblem(s.CachedInfo().Config, stream, partitionTransforms(c.cfg.Prefix, c.cfg.Partitions)); why != "" {
			return fmt.Errorf("chat: stream %s %s: it cannot carry the consumer group %s", name, why, c.cfg.Group)
		}
		return nil
	}
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("chat: stream %s: %w", name, err)
	}
	_, err = c.js.CreateStream(ctx, jetstream.StreamConfig{
		Name:        name,
		Description: "inbound messages by partition, for the consumer group " + c.cfg.Group,
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    c.cfg.Replicas,
		Discard:     jetstream.DiscardNew,
		Sources: []*jetstream.StreamSource{{
			Name:              stream,
			OptStartSeq:       startSeq,
			SubjectTransforms: partitionTransforms(c.cfg.Prefix, c.cfg.Partitions),
		}},
		AllowDirect: true,
		Metadata:    map[string]string{createdMarker: "1"},
	})
	if err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return fmt.Errorf("chat: create stream %s: %w", name, err)
	}
	c.log.Info("created the consumer group's stream", "stream", name, "source_stream", stream, "start_seq", startSeq)
	return nil
}

// groupStreamProblem says what keeps an existing group stream from carrying the group; "" when
// nothing does.
func groupStreamProblem(cfg jetstream.StreamConfig, source string, transforms []jetstream.SubjectTransformConfig) string {
	switch {
	case cfg.Retention != jetstream.WorkQueuePolicy:
		return "is not a work queue"
	case len(cfg.Sources) != 1 || cfg.Sources[0].Name != source:
		return "does not source the inbound stream " + source + " alone"
	case !slices.Equal(cfg.Sources[0].SubjectTransforms, transforms):
		return "does not partition the inbound subjects as the group does"
	case len(cfg.Subjects) > 0:
		return "captures subjects of its own"
	case cfg.MaxMsgsPerSubject > 0:
		return "keeps a limited number of messages per subject"
	}
	return ""
}

// consumerFilters are the filter subjects of a member's consumer for its partitions' filters: none
// when the member has every partition. The server finds the next message of a consumer with filter
// subjects by intersecting them with the subjects of a storage block, which costs in proportion to
// the distinct subjects (interactions) a backlog holds: draining 66,000 messages over 6,000
// interactions took 575 msgs/s with the 48 filters of 16 partitions, and 76,542 msgs/s without a
// filter (the same stream, on this project's 2-core machine). The group stream holds the inbound
// subjects only, so the member of every partition (one replica: the default) needs none.
func consumerFilters(p parts, filters []string) []string {
	if len(p.list()) == len(p) {
		return nil
	}
	return filters
}

// memberConsumerConfig is the member's consumer on the group stream, reading filters.
func (c *Consumer) memberConsumerConfig(filters []string) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Name:           c.cfg.Member,
		Description:    "cobrowse-connector: member " + c.cfg.Member + " of the consumer group " + c.cfg.Group,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        c.cfg.AckWait,
		MaxDeliver:     c.cfg.MaxDeliver,
		BackOff:        c.cfg.Backoff,
		MaxAckPending:  c.cfg.MaxAckPending,
		FilterSubjects: filters,
		PriorityGroups: []string{priorityGroup},
		PriorityPolicy: jetstream.PriorityPolicyPinned,
		PinnedTTL:      c.cfg.PinnedTTL,
		// A member that is gone for good (and not removed from the group) has its consumer
		// deleted by the server after a while, which frees its partitions for a new membership.
		InactiveThreshold: max(10*c.cfg.PinnedTTL, time.Minute),
	}
}
