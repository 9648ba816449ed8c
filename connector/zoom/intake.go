package zoom

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"
)

// Sink makes a verified webhook delivery durable (the daemon publishes it to NATS with the dedupe
// id and waits for the PubAck). A delivery it holds already is ErrReplay. The intake answers Zoom 200 only after Sink returned nil, so a
// delivery Zoom was told it handed over is never lost; an error makes Zoom send it again.
type Sink func(ctx context.Context, dedupeID string, body []byte) error

// Intake is the HTTP handler of Zoom's webhook deliveries. It decides nothing: it verifies the
// delivery (Webhook.Receive: size, signature, timestamp window), answers endpoint.url_validation,
// hands every other verified delivery to the Sink, and answers:
//
//	200  handed over (or a url_validation answered)
//	400  a body that is not a delivery, or a replay of one already stored (the Sink says ErrReplay)
//	401  a missing or bad signature, or a timestamp outside the window
//	405  not a POST
//	413  a body over the limit
//	503  the Sink failed (Zoom retries)
//
// A refused delivery changes nothing and is logged once (never its body, never a secret). Zoom
// wants its answer within 3 s: SinkTimeout bounds the Sink's wait.
type Intake struct {
	Webhook     *Webhook
	Sink        Sink
	SinkTimeout time.Duration // default 2s
	Logger      *slog.Logger  // default: discard

	once sync.Once
	log  *slog.Logger
}

// DefaultSinkTimeout bounds the Sink's wait when Intake.SinkTimeout is zero: inside Zoom's 3 s.
const DefaultSinkTimeout = 2 * time.Second

func (in *Intake) init() {
	in.once.Do(func() {
		l := in.Logger
		if l == nil {
			l = slog.New(slog.DiscardHandler)
		}
		in.log = l.With("component", "zoom", "vendor", "zoom")
		if in.SinkTimeout <= 0 {
			in.SinkTimeout = DefaultSinkTimeout
		}
	})
}

func (in *Intake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	in.init()
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	body, err := in.Webhook.ReadBody(r.Body)
	if err != nil {
		in.refuse(w, r, err)
		return
	}
	ev, validation, err := in.Webhook.Receive(r.Header, body)
	if err != nil {
		in.refuse(w, r, err)
		return
	}
	if validation != nil {
		in.log.Info("webhook URL validation answered")
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(validation)
		return
	}
	id := DedupeID(body)
	ctx, cancel := context.WithTimeout(r.Context(), in.SinkTimeout)
	defer cancel()
	if err := in.Sink(ctx, id, body); err != nil {
		if errors.Is(err, ErrReplay) {
			in.refuse(w, r, err)
			return
		}
		in.log.Warn("webhook delivery not handed over; Zoom will send it again", "event", ev.Name, "delivery", id[:12], "error", err)
		http.Error(w, "not stored, try again", http.StatusServiceUnavailable)
		return
	}
	in.log.Debug("webhook delivery handed over", "event", ev.Name, "session_id", ev.SessionID, "delivery", id[:12])
	w.WriteHeader(http.StatusOK)
}

// refuse answers a delivery that failed its checks, with its status, and logs it once.
func (in *Intake) refuse(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusBadRequest
	switch {
	case errors.Is(err, ErrBadSignature), errors.Is(err, ErrStale):
		status = http.StatusUnauthorized
	case errors.Is(err, ErrTooLarge):
		status = http.StatusRequestEntityTooLarge
	}
	in.log.Warn("webhook delivery refused", "status", status, "remote", r.RemoteAddr, "error", err)
	http.Error(w, http.StatusText(status), status)
}
