// The session index: which interaction holds a vendor's session, so that what the vendor says
// about a session by its own id (a webhook) finds its interaction.
package controller

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/cobrowse-connector/cobrowse-connector/chat"
	"github.com/cobrowse-connector/cobrowse-connector/connector"
)

// ErrNoSession is LookupSession's error for a session the index does not hold: no interaction
// joined it (yet), or the daemon never did. It wraps chat.ErrNoSession, the not-found the webhook
// router (chat.Router) waits on, so that LookupSession serves as the router's Lookup as it is.
var ErrNoSession = fmt.Errorf("session index: %w", chat.ErrNoSession)

// sessionPrefix starts every index key: session.<vendor>.<base64url(sessionId)>. A state key
// never starts so: an interaction id is a subject token (no '.'), and an id with other characters
// is stored under "b64.".
const sessionPrefix = "session."

// sessionKey is the index key of a vendor's session. The session id is base64url-encoded (no
// padding): a vendor's id may hold '/', '+' or '=', and an empty one must not make a key ending in
// '.'. The vendor must be a plain token (letters, digits, '-', '_').
func sessionKey(vendor connector.Vendor, sessionID string) (string, error) {
	if sessionID == "" {
		return "", errors.New("session index: empty session id")
	}
	if vendor == "" {
		return "", errors.New("session index: empty vendor")
	}
	for i := 0; i < len(vendor); i++ {
		ch := vendor[i]
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '_') {
			return "", fmt.Errorf("session index: vendor %q is not a plain token", string(vendor))
		}
	}
	return sessionPrefix + string(vendor) + "." + base64.RawURLEncoding.EncodeToString([]byte(sessionID)), nil
}

// LookupSession returns the interaction whose session, of vendor, has the id sessionID; an error
// wrapping ErrNoSession when no interaction ever held it. The Zoom webhook router uses it.
func (c *Controller) LookupSession(ctx context.Context, vendor connector.Vendor, sessionID string) (string, error) {
	return c.store.LookupSession(ctx, vendor, sessionID)
}

// indexingStore is the Store the actors save through: before it saves a state with a live
// session of a vendor that needs it (connector.Indexed), it indexes the session (IndexSession), so
// a webhook about the session finds the interaction. The join, the re-join after a restart (rejoined) and a Bayeux re-handshake
// (EventRejoined) each leave a live state the step's commit saves, so each is indexed in the same
// commit path as the step's other work: the index is written before the state, and a failed index
// write fails the save, which the actor treats as any failed save (the inbound message is nak'd
// and redelivered, or the actor's retry timer commits again). A live state is therefore never
// saved without its index entry.
//
// The entry is kept after the session ends: late webhooks (session_ended, a user_left) arrive
// after the end and must still find their interaction. Nothing deletes it: with a retention
// (KVConfig.Retention) the server removes it a retention after its last write, and the end of the
// session this process indexed writes it once more, so that it stays a retention past the end, as
// the interaction's state stays a retention past its close; without one, a bucket TTL, when the
// operator sets one, expires it with the states.
type indexingStore struct {
	Store
	vendor  connector.Vendor          // the default vendor, for a state that names none
	vendors map[connector.Vendor]bool // the vendors whose sessions are indexed (connector.Indexed)
	log     *slog.Logger

	mu      sync.Mutex
	indexed map[string]indexed // interaction id -> its session this process indexed
}

// indexed is a session this process indexed.
type indexed struct {
	key       string
	vendor    connector.Vendor
	sessionID string
}

// retainer is a Store that removes what it holds after a retention (KVStore): an ended session's
// entry is written again with it.
type retainer interface {
	RetainSession(ctx context.Context, vendor connector.Vendor, sessionID, interactionID string) error
}

func newIndexingStore(s Store, vendor connector.Vendor, vendors map[connector.Vendor]bool, log *slog.Logger) *indexingStore {
	if is, ok := s.(*indexingStore); ok {
		s = is.Store
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &indexingStore{Store: s, vendor: vendor, vendors: vendors, log: log, indexed: make(map[string]indexed)}
}

// Save indexes the live session when this process has not indexed it yet, then saves the state.
func (s *indexingStore) Save(ctx context.Context, st State, rev uint64) (uint64, error) {
	if l := st.Live; l != nil && l.Handle.SessionID != "" {
		vendor := l.Handle.Vendor
		if vendor == "" {
			vendor = st.Vendor
		}
		if vendor == "" {
			vendor = s.vendor
		}
		if !s.vendors[vendor] {
			return s.Store.Save(ctx, st, rev)
		}
		key, err := sessionKey(vendor, l.Handle.SessionID)
		s.mu.Lock()
		done := err != nil || s.indexed[st.InteractionID].key == key
		s.mu.Unlock()
		if err != nil {
			// A vendor name no key can hold: the session cannot be indexed, which must not keep
			// its state from being saved.
			s.log.Error("session not indexed", "interaction", st.InteractionID, "error", err)
		}
		if !done {
			if err := s.Store.IndexSession(ctx, vendor, l.Handle.SessionID, st.InteractionID); err != nil {
				return 0, fmt.Errorf("index session: %w", err)
			}
			s.mu.Lock()
			s.indexed[st.InteractionID] = indexed{key: key, vendor: vendor, sessionID: l.Handle.SessionID}
			s.mu.Unlock()
		}
	}
	n, err := s.Store.Save(ctx, st, rev)
	if err == nil && st.Live == nil {
		s.mu.Lock()
		ended, ok := s.indexed[st.InteractionID]
		delete(s.indexed, st.InteractionID)
		s.mu.Unlock()
		if r, retains := s.Store.(retainer); ok && retains {
			// The session ended: its entry is written again, to go a retention from now. A
			// failure leaves the entry without a TTL (kept, as without a retention), which the
			// state's own save does not depend on.
			if err := r.RetainSession(ctx, ended.vendor, ended.sessionID, st.InteractionID); err != nil {
				s.log.Warn("session index not given its retention at the session's end; it is kept",
					"interaction", st.InteractionID, "vendor", ended.vendor, "error", err)
			}
		}
	}
	return n, err
}
