package controller

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

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
type KVStore struct {
	kv jetstream.KeyValue
	js jetstream.JetStream // to send a live marker without waiting for its reply (Save)

	mu     sync.Mutex
	marked map[string]bool // state keys whose marker this store wrote or found

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
}

// KVOps are the ops KVConfig.Latency is called with.
var KVOps = [...]string{"get", "create", "update"}

// OpenKVStore opens the bucket, creating it when it does not exist. An existing bucket is used as
// it is.
func OpenKVStore(ctx context.Context, js jetstream.JetStream, cfg KVConfig) (*KVStore, error) {
	if cfg.Bucket == "" {
		cfg.Bucket = DefaultBucket
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	kv, err := js.KeyValue(ctx, cfg.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      cfg.Bucket,
			Description: "cobrowse-connector: per-interaction co-browse state",
			History:     1,
			TTL:         cfg.TTL,
			Replicas:    cfg.Replicas,
		})
	}
	if err != nil {
		return nil, fmt.Errorf("key-value bucket %s: %w", cfg.Bucket, err)
	}
	s := &KVStore{kv: kv, js: js, marked: make(map[string]bool), getTime: nothing{}, createTime: nothing{}, updateTime: nothing{}}
	if f := cfg.Latency; f != nil {
		s.getTime, s.createTime, s.updateTime = f(KVOps[0]), f(KVOps[1]), f(KVOps[2])
	}
	return s, nil
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
	begun := time.Now()
	if rev == 0 {
		n, err = s.kv.Create(ctx, key, b)
		s.createTime.Observe(time.Since(begun).Seconds())
	} else {
		n, err = s.kv.Update(ctx, key, b, rev)
		s.updateTime.Observe(time.Since(begun).Seconds())
	}
	if marked != nil {
		select {
		case <-marked.Ok():
			s.setMarked(key, true)
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
	if err == nil && st.Live == nil && s.isMarked(key) {
		// A failure leaves the key marked: the next save, or the next start, tries again.
		if derr := s.kv.Delete(ctx, livePrefix+key); derr == nil {
			s.setMarked(key, false)
		}
	}
	return n, err
}

func (s *KVStore) isMarked(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.marked[key]
}

func (s *KVStore) setMarked(key string, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if on {
		s.marked[key] = true
	} else {
		delete(s.marked, key)
	}
}

// Live returns every state that has a live session, found through the live markers; a marker
// whose state is no longer live is deleted.
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
		e, err := s.kv.Get(ctx, key)
		if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil, err
		}
		var st State
		if err == nil {
			if err := json.Unmarshal(e.Value(), &st); err != nil {
				return nil, fmt.Errorf("state under key %s: %w", key, err)
			}
		}
		if st.Live == nil {
			if err := s.kv.Delete(ctx, m); err != nil {
				return nil, fmt.Errorf("stale live marker %s: %w", m, err)
			}
			continue
		}
		s.setMarked(key, true)
		out = append(out, Saved{State: st, Rev: e.Revision()})
	}
	return out, nil
}

// IndexSession records under session.<vendor>.<base64url(sessionId)> the interaction that holds the
// session. The key outlives the session (see indexingStore).
func (s *KVStore) IndexSession(ctx context.Context, vendor connector.Vendor, sessionID, interactionID string) error {
	key, err := sessionKey(vendor, sessionID)
	if err != nil {
		return err
	}
	if interactionID == "" {
		return errors.New("session index: empty interaction id")
	}
	if _, err := s.kv.Put(ctx, key, []byte(interactionID)); err != nil {
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
