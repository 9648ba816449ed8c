package zoom

import (
	"bytes"
	"sync"
	"sync/atomic"
	"time"
)

// accepted is one secret (or a secret's digest) a verifier accepts. until is when a secret a
// rotation replaced stops being accepted; zero for a configured one.
type accepted struct {
	value []byte
	until time.Time
}

// secretSet is the secrets a verifier accepts, swapped whole by a rotation while requests are
// verified: a request reads one snapshot, never a half-made set.
type secretSet struct {
	mu  sync.Mutex // serializes rotations; readers take no lock
	cur atomic.Pointer[[]accepted]
}

func newSecretSet(values [][]byte) *secretSet {
	s := &secretSet{}
	set := make([]accepted, len(values))
	for i, v := range values {
		set[i] = accepted{value: v}
	}
	s.cur.Store(&set)
	return s
}

// load is the current snapshot, expired entries included (match skips them).
func (s *secretSet) load() []accepted { return *s.cur.Load() }

// match returns the index in the snapshot of the first entry, accepted at now, for which eq is
// true, or -1, and the entry. eq is called for every entry accepted at now, whatever matched, so
// that the time taken does not say which one did.
func (s *secretSet) match(now time.Time, eq func([]byte) bool) (int, accepted) {
	set := s.load()
	idx := -1
	for i, a := range set {
		if !a.until.IsZero() && !now.Before(a.until) {
			continue
		}
		if eq(a.value) && idx < 0 {
			idx = i
		}
	}
	if idx < 0 {
		return -1, accepted{}
	}
	return idx, set[idx]
}

// rotate makes values the configured set. A value accepted until now and not among them stays
// accepted for overlap from now (a value a previous rotation replaced keeps its own end): the
// senders that still use it have that long to move over. overlap <= 0: it is refused at once.
func (s *secretSet) rotate(values [][]byte, now time.Time, overlap time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := make([]accepted, 0, len(values)+2)
	for _, v := range values {
		next = append(next, accepted{value: v})
	}
	for _, old := range s.load() {
		if containsValue(values, old.value) || (!old.until.IsZero() && !now.Before(old.until)) {
			continue
		}
		until := old.until
		if until.IsZero() {
			if overlap <= 0 {
				continue
			}
			until = now.Add(overlap)
		}
		next = append(next, accepted{value: old.value, until: until})
	}
	s.cur.Store(&next)
}

// accepting counts the entries accepted at now.
func (s *secretSet) accepting(now time.Time) int {
	n := 0
	for _, a := range s.load() {
		if a.until.IsZero() || now.Before(a.until) {
			n++
		}
	}
	return n
}

func containsValue(values [][]byte, v []byte) bool {
	for _, x := range values {
		if bytes.Equal(x, v) {
			return true
		}
	}
	return false
}
