package zoomtest

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// WebhookStats count the webhook deliveries.
type WebhookStats struct {
	Queued     int // deliveries put in the queue (a duplicate counts twice)
	Delivered  int // answered 2xx
	Failed     int // given up after WebhookAttempts
	Attempts   int // HTTP requests sent
	Dropped    int // lost on purpose (DropWebhooks)
	Duplicated int // sent twice on purpose (DuplicateWebhooks)
	Overflow   int // lost because the queue was full
	Discarded  int // still queued or in flight when the server closed
}

// hookSender sends the webhooks from one goroutine, in order. Its counters and fault budgets are
// guarded by the server's mutex.
type hookSender struct {
	s      *Server
	queue  chan []byte // nil when no WebhookURL is set
	done   chan struct{}
	client *http.Client

	stats   WebhookStats
	drop    int
	dup     int
	pending int // queued or in flight
}

func newHookSender(s *Server) *hookSender {
	h := &hookSender{s: s, done: make(chan struct{})}
	if s.opts.WebhookURL == "" {
		close(h.done)
		return h
	}
	h.queue = make(chan []byte, s.opts.WebhookQueue)
	h.client = &http.Client{Transport: &http.Transport{}}
	go h.run()
	return h
}

// enqueueLocked builds and queues one delivery. s.mu is held, so deliveries are queued in the
// order of the state changes.
func (h *hookSender) enqueueLocked(event string, object map[string]any) {
	if h.queue == nil || h.s.closed {
		return
	}
	body, _ := json.Marshal(map[string]any{
		"event":    event,
		"event_ts": time.Now().UnixMilli(),
		"payload":  map[string]any{"account_id": h.s.opts.AccountID, "object": object},
	})
	if h.drop > 0 {
		h.drop--
		h.stats.Dropped++
		return
	}
	n := 1
	if h.dup > 0 {
		h.dup--
		h.stats.Duplicated++
		n = 2
	}
	for range n {
		select {
		case h.queue <- body:
			h.stats.Queued++
			h.pending++
		default:
			h.stats.Overflow++
			h.s.log.Warn("webhook queue full; delivery dropped", "event", event)
		}
	}
}

// closeQueueLocked ends the queue: the sender drains it (discarding, since the server is closing)
// and ends. s.mu is held.
func (h *hookSender) closeQueueLocked() {
	if h.queue != nil {
		close(h.queue)
	}
}

func (h *hookSender) wait() {
	<-h.done
	if h.client != nil {
		h.client.CloseIdleConnections()
	}
}

func (h *hookSender) run() {
	defer close(h.done)
	for body := range h.queue {
		ok, attempts := h.deliver(body)
		h.s.mu.Lock()
		h.pending--
		h.stats.Attempts += attempts
		switch {
		case ok:
			h.stats.Delivered++
		case h.isClosing():
			h.stats.Discarded++
		default:
			h.stats.Failed++
		}
		h.s.notifyLocked()
		h.s.mu.Unlock()
	}
}

func (h *hookSender) isClosing() bool {
	select {
	case <-h.s.closing:
		return true
	default:
		return false
	}
}

// deliver sends one delivery, signed afresh on each attempt, until an attempt is answered 2xx,
// WebhookAttempts are spent or the server closes.
func (h *hookSender) deliver(body []byte) (ok bool, attempts int) {
	o := h.s.opts
	for attempts < o.WebhookAttempts {
		if h.isClosing() {
			return false, attempts
		}
		attempts++
		status, _, err := h.post(body)
		if err == nil && status >= 200 && status <= 299 {
			return true, attempts
		}
		h.s.log.Debug("webhook attempt failed", "attempt", attempts, "status", status, "error", err)
		if attempts < o.WebhookAttempts {
			t := time.NewTimer(o.WebhookRetryDelay)
			select {
			case <-t.C:
			case <-h.s.closing:
				t.Stop()
				return false, attempts
			}
		}
	}
	return false, attempts
}

// post sends one signed POST to WebhookURL and returns the status and at most 64 KiB of the reply.
// It gives up after WebhookTimeout or when the server closes.
func (h *hookSender) post(body []byte) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(h.s.ctx, h.s.opts.WebhookTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.s.opts.WebhookURL, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("User-Agent", "Zoom Marketplace/1.0a (zoomtest)")
	req.Header.Set("x-zm-request-timestamp", ts)
	req.Header.Set("x-zm-signature", Sign(h.s.opts.WebhookSecret, ts, body))
	resp, err := h.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	reply, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, reply, nil
}

// Sign is Zoom's webhook signature: "v0=" + hex HMAC-SHA256(secret, "v0:" + timestamp + ":" + body).
func Sign(secret, timestamp string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("v0:" + timestamp + ":"))
	m.Write(body)
	return "v0=" + hex.EncodeToString(m.Sum(nil))
}

// DropWebhooks makes the next n deliveries get lost (never sent).
func (s *Server) DropWebhooks(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hooks.drop += n
}

// DuplicateWebhooks makes the next n deliveries be sent twice (the same body, each signed on its own).
func (s *Server) DuplicateWebhooks(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hooks.dup += n
}

// WebhookStats returns the webhook counters.
func (s *Server) WebhookStats() WebhookStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hooks.stats
}

// WaitWebhooks waits until every queued delivery has been delivered or given up.
func (s *Server) WaitWebhooks(ctx context.Context) error {
	return s.waitFor(ctx, func() bool { return s.hooks.pending == 0 })
}

// ValidateURL sends endpoint.url_validation to WebhookURL, as Zoom does when the URL is saved and
// every 72 hours, on the caller's goroutine, and checks the answer: 200 with JSON
// {"plainToken","encryptedToken"} where encryptedToken is hex HMAC-SHA256(secret, plainToken).
func (s *Server) ValidateURL(ctx context.Context) error {
	if s.opts.WebhookURL == "" {
		return errors.New("zoomtest: no WebhookURL")
	}
	plain := rand.Text()
	body, _ := json.Marshal(map[string]any{
		"event":    "endpoint.url_validation",
		"event_ts": time.Now().UnixMilli(),
		"payload":  map[string]any{"plainToken": plain},
	})
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(s.ctx, cancel) // the server closing gives up too
	defer stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.opts.WebhookURL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("x-zm-request-timestamp", ts)
	req.Header.Set("x-zm-signature", Sign(s.opts.WebhookSecret, ts, body))
	c := &http.Client{Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("zoomtest: url_validation: %w", err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("zoomtest: url_validation answered HTTP %d", resp.StatusCode)
	}
	var got struct {
		PlainToken     string `json:"plainToken"`
		EncryptedToken string `json:"encryptedToken"`
	}
	if err := json.Unmarshal(raw, &got); err != nil {
		return fmt.Errorf("zoomtest: url_validation answer is not JSON: %w", err)
	}
	m := hmac.New(sha256.New, []byte(s.opts.WebhookSecret))
	m.Write([]byte(plain))
	if got.PlainToken != plain || got.EncryptedToken != hex.EncodeToString(m.Sum(nil)) {
		return errors.New("zoomtest: url_validation answer does not match")
	}
	return nil
}
