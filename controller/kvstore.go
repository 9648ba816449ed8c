package controller

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cobrowse-connector/cobrowse-connector/connector"
)

// KVStore keeps interaction states in a JetStream key-value bucket (default cobrowse_interactions),
// one key per interaction, as JSON.
//
// Beside each state with a live session it keeps an empty marker key, "live.<key>", so that a
// restart finds the live sessions by listing the markers instead of reading every interaction
// the bucket ever held. The marker is written before the first live state and deleted after the
// state stops being live: a crash in between leaves a stale marker, which Live cleans up, never a
// live state without one.
//
// With a retention (KVConfig.Retention), the state of a done interaction (see Done) is written
// with a per-message TTL: the server removes that revision when the retention is over, unless a
// later write replaced it. A TTL belongs to the one revision it was written with, so the removal
// is a compare-and-delete by construction: a replica that updated the key meanwhile wrote a new
// revision, which the old TTL does not touch. The session index entries are written with the same
// TTL, and the live markers are purged with a short one, so that none of an interaction's keys,
// nor their delete markers, outlive it.
type KVStore struct {
	kv jetstream.KeyValue
	js jetstream.JetStream // to send a live marker without waiting for its reply (Save)
	// subj is the bucket's subject prefix, "$KV.<bucket>.": the writes that carry a TTL go there.
	subj string
	// retention is the TTL of a done state and of the session index; 0: none (kept). markerTTL,
	// set when the bucket allows per-message TTLs, is how long a purged live marker's tombstone
	// (and a TTL removal's marker) stays.
	retention time.Duration
	markerTTL time.Duration
	// now is the clock Live judges a marker's age by (time.Now; a test moves it).
	now func() time.Time

	mu     sync.Mutex
	marked map[string]uint64 // state keys whose marker this store wrote (its revision) or found (0)

	// The latency of the bucket's reads and writes (KVConfig.Latency), resolved once.
	getTime, createTime, updateTime Observer
}

const livePrefix = "live."

// DefaultBucket is the state bucket of a KVConfig that names none.
const DefaultBucket = "cobrowse_interactions"

// KVConfig names the bucket and how long an untouched interaction's state is kept.
type KVConfig struct {
	Bucket   string        // default DefaultBucket
	TTL      time.Duration // 0: kept until deleted. A state untouched this long is dropped; its attach seq would then restart, so keep it well past any interaction's life
	Replicas int           // default 1
	// Latency, when set, observes how long the bucket's calls take, in seconds, by op: get (a
	// state or a session's index read), create (a first state) and update (a state saved again,
	// compare-and-set). Called once per op when the store is opened. Nil: not measured.
	Latency func(op string) Observer
	// Retention is how long a done interaction's state (Done: closed, nothing live, pending or
	// unpublished) is kept after its last save, and its session index entries after their last
	// write; 0: kept. It needs per-message TTLs (nats-server 2.11 or later): a bucket created
	// without them is updated to allow them (a one-way change: NATS cannot turn it off again);
	// on a server without them the states are kept and OpenKVStore logs a warning.
	Retention time.Duration
	// Logger receives what OpenKVStore did to the bucket. Default: discard.
	Logger *slog.Logger
}

// KVOps are the ops KVConfig.Latency is called with.
var KVOps = [...]string{"get", "create", "update"}

// markerGrace is how long a live marker newer than its state's last save is taken for a live save
// in flight (the marker goes first): a save takes milliseconds, a minute is far beyond it.
const markerGrace = time.Minute

// markerTTL is how long the server keeps the marker it leaves when a TTL removes a key, and the
// tombstone of a purged live marker: long enough for a watcher to see it, short enough that the
// bucket does not fill with them.
const markerTTL = time.Minute

// OpenKVStore opens the bucket, creating it when it does not exist. An existing bucket is used as
// it is, except that a retention makes it allow per-message TTLs (see KVConfig.Retention).
func OpenKVStore(ctx context.Context, js jetstream.JetStream, cfg KVConfig) (*KVStore, error) {
	if cfg.Bucket == "" {
		cfg.Bucket = DefaultBucket
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "controller")
	var ttls bool
	var ttlErr error
	if cfg.Retention > 0 {
		ttls, ttlErr = ttlSupported(ctx, js)
	}
	kv, err := js.KeyValue(ctx, cfg.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kcfg := jetstream.KeyValueConfig{
			Bucket:      cfg.Bucket,
			Description: "cobrowse-connector: per-interaction co-browse state",
			History:     1,
			TTL:         cfg.TTL,
			Replicas:    cfg.Replicas,
		}
		if ttls {
			kcfg.LimitMarkerTTL = markerTTL
		}
		kv, err = js.CreateKeyValue(ctx, kcfg)
	}
	if err != nil {
		return nil, fmt.Errorf("key-value bucket %s: %w", cfg.Bucket, err)
	}
	s := &KVStore{kv: kv, js: js, subj: "$KV." + cfg.Bucket + ".", marked: make(map[string]uint64), now: time.Now,
		getTime: nothing{}, createTime: nothing{}, updateTime: nothing{}}
	if f := cfg.Latency; f != nil {
		s.getTime, s.createTime, s.updateTime = f(KVOps[0]), f(KVOps[1]), f(KVOps[2])
	}
	if cfg.Retention <= 0 {
		return s, nil
	}
	if !ttls {
		args := []any{"bucket", cfg.Bucket, "retention", cfg.Retention}
		if ttlErr != nil {
			args = append(args, "error", ttlErr)
		}
		log.Warn("controller.retention needs per-message TTLs (nats-server 2.11 or later): closed interactions' states are kept", args...)
		return s, nil
	}
	if s.markerTTL, err = allowTTLs(ctx, js, cfg.Bucket, log); err != nil {
		return nil, fmt.Errorf("key-value bucket %s: %w", cfg.Bucket, err)
	}
	s.retention = cfg.Retention
	return s, nil
}

// ttlSupported reports whether the server takes per-message TTLs (JetStream API level 1, which
// nats-server 2.11 brought); an error when it could not be asked (no $JS.API.INFO permission).
func ttlSupported(ctx context.Context, js jetstream.JetStream) (bool, error) {
	info, err := js.AccountInfo(ctx)
	if err != nil {
		return false, fmt.Errorf("account info: %w", err)
	}
	return info.API.Level >= 1, nil
}

// allowTTLs makes the bucket's stream allow per-message TTLs, when it was created without them
// (by an earlier release, or by an operator), and returns how long its removal markers stay:
// it also sets the subject delete marker TTL when none is set (so that a removal, by a TTL or by
// the bucket's own age limit, leaves a marker a watcher sees for that long). Nothing else of the
// stream changes.
func allowTTLs(ctx context.Context, js jetstream.JetStream, bucket string, log *slog.Logger) (time.Duration, error) {
	st, err := js.Stream(ctx, "KV_"+bucket)
	if err != nil {
		return 0, err
	}
	sc := st.CachedInfo().Config
	if sc.AllowMsgTTL {
		return cmp0(sc.SubjectDeleteMarkerTTL, markerTTL), nil
	}
	sc.AllowMsgTTL = true
	if sc.SubjectDeleteMarkerTTL == 0 {
		sc.SubjectDeleteMarkerTTL = markerTTL
	}
	if _, err := js.UpdateStream(ctx, sc); err != nil {
		return 0, fmt.Errorf("allowing per-message TTLs for controller.retention: %w", err)
	}
	log.Info("the state bucket now allows per-message TTLs, for controller.retention (a one-way change)", "bucket", bucket)
	return sc.SubjectDeleteMarkerTTL, nil
}

func cmp0(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// Retention is the retention the store applies: KVConfig.Retention, or 0 when the server cannot.
func (s *KVStore) Retention() time.Duration { return s.retention }

// Done reports whether an interaction is over for the daemon: closed, with no live session, no
// join in flight, no stop to retry and nothing left to publish. Its state is then only kept for a
// late message, until the retention.
func Done(st State) bool {
	return st.Closed && st.Live == nil && st.Joining == nil && len(st.PendingStops) == 0 && len(st.Outbox) == 0
}

// kvKey maps an interaction id to a bucket key. Ids made only of characters a key allows are used
// as they are, so the bucket stays readable; any other id is base64url-encoded behind a prefix
// that holds a '.', which a plain id (a NATS subject token) can never contain.
func kvKey(id string) string {
	for i := 0; i < len(id); i++ {
		ch := id[i]
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '_' || ch == '=') {
			return "b64." + base64.RawURLEncoding.EncodeToString([]byte(id))
		}
	}
	return id
}

// Load returns the interaction's state and revision, or a zero state and revision 0.
func (s *KVStore) Load(ctx context.Context, id string) (State, uint64, error) {
	begun := time.Now()
	e, err := s.kv.Get(ctx, kvKey(id))
	s.getTime.Observe(time.Since(begun).Seconds())
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return State{InteractionID: id}, 0, nil
	}
	if err != nil {
		return State{}, 0, err
	}
	var st State
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		return State{}, 0, fmt.Errorf("state of %s: %w", id, err)
	}
	return st, e.Revision(), nil
}

// Save writes the state if the stored revision is still rev. A revision that moved (another
// writer, a reply lost while the write went through, an expired key) is an ErrConflict.
func (s *KVStore) Save(ctx context.Context, st State, rev uint64) (uint64, error) {
	b, err := json.Marshal(st)
	if err != nil {
		return 0, err
	}
	key := kvKey(st.InteractionID)
	var marked jetstream.PubAckFuture
	if st.Live != nil && !s.isMarked(key) {
		// The marker goes out first and the state right behind it on the same connection, without
		// waiting between them: one round trip instead of two on every join. The server takes
		// them in that order; should the marker fail and the state not, the save fails all the
		// same, and the next one finds the revision moved (a conflict: the actor lets go, and
		// takes the interaction up again from the store, marker and all).
		marked, err = s.js.PublishAsync("$KV."+s.kv.Bucket()+"."+livePrefix+key, nil)
		if err != nil {
			return 0, fmt.Errorf("live marker: %w", err)
		}
	}
	var n uint64
	var ttl time.Duration
	if s.retention > 0 && Done(st) {
		ttl = s.retention
	}
	begun := time.Now()
	switch {
	case rev == 0 && ttl > 0:
		n, err = s.kv.Create(ctx, key, b, jetstream.KeyTTL(ttl))
		s.createTime.Observe(time.Since(begun).Seconds())
	case rev == 0:
		n, err = s.kv.Create(ctx, key, b)
		s.createTime.Observe(time.Since(begun).Seconds())
	case ttl > 0:
		n, err = s.updateTTL(ctx, key, b, rev, ttl)
		s.updateTime.Observe(time.Since(begun).Seconds())
	default:
		n, err = s.kv.Update(ctx, key, b, rev)
		s.updateTime.Observe(time.Since(begun).Seconds())
	}
	if marked != nil {
		select {
		case pa := <-marked.Ok():
			s.setMarked(key, pa.Sequence)
		case merr := <-marked.Err():
			return 0, fmt.Errorf("live marker: %w", merr)
		case <-ctx.Done():
			return 0, fmt.Errorf("live marker: %w", ctx.Err())
		}
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) ||
		(rev != 0 && errors.Is(err, jetstream.ErrKeyNotFound)) {
		return 0, fmt.Errorf("%w: %w", ErrConflict, err)
	}
	if err == nil && st.Live == nil {
		if mrev, ok := s.markedAt(key); ok {
			// A failure leaves the key marked: the next save, or the next start, tries again.
			if derr := s.unmark(ctx, key, mrev); derr == nil {
				s.clearMarked(key)
			}
		}
	}
	return n, err
}

// updateTTL is Update for a revision the server removes after ttl: the same compare-and-set on
// the key's last revision, with the message's TTL header (KeyValue.Update takes no TTL).
func (s *KVStore) updateTTL(ctx context.Context, key string, value []byte, rev uint64, ttl time.Duration) (uint64, error) {
	m := nats.NewMsg(s.subj + key)
	m.Data = value
	pa, err := s.js.PublishMsg(ctx, m, jetstream.WithExpectLastSequencePerSubject(rev), jetstream.WithMsgTTL(ttl))
	if err != nil {
		if apiErr, ok := errors.AsType[*jetstream.APIError](err); ok && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
			return 0, fmt.Errorf("%w: %w", err, jetstream.ErrKeyRevisionMismatch)
		}
		return 0, err
	}
	return pa.Sequence, nil
}

// unmark removes the live marker of a state key, only if it is still the revision this store
// wrote (rev; 0: unknown, found by Live): a marker another replica wrote since, for a session it
// took up, stays. With TTLs allowed it is purged with a short TTL, so that its tombstone goes too.
func (s *KVStore) unmark(ctx context.Context, key string, rev uint64) error {
	var opts []jetstream.KVDeleteOpt
	if rev != 0 {
		opts = append(opts, jetstream.LastRevision(rev))
	}
	var err error
	if s.markerTTL > 0 {
		err = s.kv.Purge(ctx, livePrefix+key, append(opts, jetstream.PurgeTTL(s.markerTTL))...)
	} else {
		err = s.kv.Delete(ctx, livePrefix+key, opts...)
	}
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return nil // rewritten by someone else since: theirs now, and not this store's to remove
	}
	return err
}

func (s *KVStore) markedAt(key string) (uint64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rev, ok := s.marked[key]
	return rev, ok
}

func (s *KVStore) isMarked(key string) bool {
	_, ok := s.markedAt(key)
	return ok
}

func (s *KVStore) setMarked(key string, rev uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.marked[key] = rev
}

func (s *KVStore) clearMarked(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.marked, key)
}

// Live returns every state that has a live session, found through the live markers; a marker
// whose state was saved since without a live session is deleted (revision-checked).
func (s *KVStore) Live(ctx context.Context) ([]Saved, error) {
	lister, err := s.kv.ListKeysFiltered(ctx, livePrefix+">")
	if err != nil {
		return nil, err
	}
	var markers []string
	for m := range lister.Keys() {
		markers = append(markers, m)
	}
	_ = lister.Stop() // the listing is complete once Keys is closed
	var out []Saved
	for _, m := range markers {
		key := strings.TrimPrefix(m, livePrefix)
		me, err := s.kv.Get(ctx, m)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // removed since the listing
		}
		if err != nil {
			return nil, err
		}
		e, err := s.kv.Get(ctx, key)
		if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil, err
		}
		var st State
		var stateRev uint64
		if err == nil {
			if err := json.Unmarshal(e.Value(), &st); err != nil {
				return nil, fmt.Errorf("state under key %s: %w", key, err)
			}
			stateRev = e.Revision()
		}
		if st.Live == nil {
			// Stale when the state was saved after the marker (revisions are the bucket's stream
			// sequence, one order for every key), or when the marker is older than a save takes:
			// a fresh marker written after the state's last save belongs to a live save in
			// flight, which writes the marker first, perhaps on another replica. Removing that one
			// would leave the session's state without its marker.
			if stateRev > me.Revision() || s.now().Sub(me.Created()) > markerGrace {
				if err := s.unmark(ctx, key, me.Revision()); err != nil {
					return nil, fmt.Errorf("stale live marker %s: %w", m, err)
				}
			}
			continue
		}
		if !s.isMarked(key) {
			s.setMarked(key, 0)
		}
		out = append(out, Saved{State: st, Rev: e.Revision()})
	}
	return out, nil
}

// EachLive calls fn with each live session the bucket holds, as any replica sees it, until fn
// returns false: the states its live markers point to, in the order of their keys, starting
// after the interaction after ("": from the first). It only reads: a stale marker (its state no
// longer live, or gone) is skipped, and Live cleans it up later. It reads every marker's key, and
// the state of each until fn has enough: for an operator's listing, not for a hot path.
func (s *KVStore) EachLive(ctx context.Context, after string, fn func(Saved) bool) error {
	lister, err := s.kv.ListKeysFiltered(ctx, livePrefix+">")
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var keys []string
	for m := range lister.Keys() {
		keys = append(keys, strings.TrimPrefix(m, livePrefix))
	}
	_ = lister.Stop()
	slices.Sort(keys)
	from := 0
	if after != "" {
		from, _ = slices.BinarySearch(keys, kvKey(after))
		if from < len(keys) && keys[from] == kvKey(after) {
			from++
		}
	}
	for _, key := range keys[from:] {
		e, err := s.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		var st State
		if err := json.Unmarshal(e.Value(), &st); err != nil {
			return fmt.Errorf("state under key %s: %w", key, err)
		}
		if st.Live == nil {
			continue
		}
		if !fn(Saved{State: st, Rev: e.Revision()}) {
			return nil
		}
	}
	return nil
}

// IndexSession records under session.<vendor>.<base64url(sessionId)> the interaction that holds the
// session, while it is live: without a TTL, so that a session longer than the retention keeps
// its entry (its webhooks would find no interaction otherwise). The key outlives the session
// (see indexingStore): RetainSession writes it again at the session's end.
func (s *KVStore) IndexSession(ctx context.Context, vendor connector.Vendor, sessionID, interactionID string) error {
	return s.putSession(ctx, vendor, sessionID, interactionID, 0)
}

// RetainSession writes a session's entry again once the session ended, with the retention as its
// TTL: the server removes it a retention after the end (late webhooks find the interaction until
// then). Without a retention it does nothing: the entry stays.
func (s *KVStore) RetainSession(ctx context.Context, vendor connector.Vendor, sessionID, interactionID string) error {
	if s.retention <= 0 {
		return nil
	}
	return s.putSession(ctx, vendor, sessionID, interactionID, s.retention)
}

// putSession writes a session's entry, with a TTL when ttl > 0. The value never changes for a key
// (a vendor's session belongs to one interaction), so a plain put is safe.
func (s *KVStore) putSession(ctx context.Context, vendor connector.Vendor, sessionID, interactionID string, ttl time.Duration) error {
	key, err := sessionKey(vendor, sessionID)
	if err != nil {
		return err
	}
	if interactionID == "" {
		return errors.New("session index: empty interaction id")
	}
	if ttl > 0 {
		m := nats.NewMsg(s.subj + key)
		m.Data = []byte(interactionID)
		_, err = s.js.PublishMsg(ctx, m, jetstream.WithMsgTTL(ttl))
	} else {
		_, err = s.kv.Put(ctx, key, []byte(interactionID))
	}
	if err != nil {
		return fmt.Errorf("session index %s: %w", key, err)
	}
	return nil
}

// LookupSession returns the interaction recorded for the session, or an error wrapping
// ErrNoSession.
func (s *KVStore) LookupSession(ctx context.Context, vendor connector.Vendor, sessionID string) (string, error) {
	key, err := sessionKey(vendor, sessionID)
	if err != nil {
		return "", err
	}
	begun := time.Now()
	e, err := s.kv.Get(ctx, key)
	s.getTime.Observe(time.Since(begun).Seconds())
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", fmt.Errorf("%w: %s session %q", ErrNoSession, vendor, sessionID)
	}
	if err != nil {
		return "", fmt.Errorf("session index %s: %w", key, err)
	}
	return string(e.Value()), nil
}
