package chat

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The consumer's pull requests go over core NATS, not through nats.go's jetstream Fetch. Why:
// Fetch runs a goroutine per request that hands each message on through a second channel, and
// per message it makes a timer (time.After), splits the reply subject into a slice, and wraps the
// message; together that was about an eighth of the daemon's CPU per ordinary chat line, the
// largest share after the decode (docs/scaling.md). Here a message goes from the connection's
// read loop through one channel to the pull loop, its two counters are read from the reply
// subject in place (ackCounts), and its acks are published on the connection directly. The wire
// protocol is the one Fetch speaks: a JSON request on $JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>
// with a fresh inbox as its reply subject, the messages and the status messages (100 idle
// heartbeat, 404/408 the request ended, 409 conflicts, 423 pin mismatch, 503 no responders) to
// that inbox.

// nextRequest is the body of a pull request (the server's JSApiConsumerGetNextRequest).
type nextRequest struct {
	Expires   time.Duration `json:"expires,omitempty"`
	Batch     int           `json:"batch"`
	Heartbeat time.Duration `json:"idle_heartbeat,omitempty"`
	Group     string        `json:"group,omitempty"`
	PinID     string        `json:"id,omitempty"`
}

// The acks, as the server reads them from a message's reply subject.
var (
	ackAck      = []byte("+ACK")
	ackNak      = []byte("-NAK")
	ackProgress = []byte("+WPI")
	ackTerm     = []byte("+TERM")
)

// inMsg is what a delivery needs of its message: a pulled message here, jetstream.Msg in tests.
type inMsg interface {
	Data() []byte
	Ack() error
	DoubleAck(ctx context.Context) error
	Nak() error
	NakWithDelay(delay time.Duration) error
	Term() error
	TermWithReason(reason string) error
	InProgress() error
}

// pulled is a message a pull request brought. It lives inside its delivery (no allocation of its
// own); its acks are published to its reply subject on the connection it came on.
//
// It keeps the payload and the reply subject, not the *nats.Msg: a delivery stays reachable until
// the keeper's next tick after its settle (a quarter of the shortest ack deadline, 250 ms by
// default), and at full speed that is tens of thousands of them. The message's struct and its
// decoded headers (the group stream's source header, the pin) were about two thirds of the bytes
// each one held (some 1.1 KiB of 1.6), all of it live heap that every collection marks.
type pulled struct {
	data    []byte
	reply   string
	nc      *nats.Conn
	timeout time.Duration // the bound of a DoubleAck whose context has no deadline
}

func newPulled(m *nats.Msg, nc *nats.Conn, timeout time.Duration) pulled {
	return pulled{data: m.Data, reply: m.Reply, nc: nc, timeout: timeout}
}

func (p *pulled) Data() []byte      { return p.data }
func (p *pulled) Ack() error        { return p.nc.Publish(p.reply, ackAck) }
func (p *pulled) Nak() error        { return p.nc.Publish(p.reply, ackNak) }
func (p *pulled) Term() error       { return p.nc.Publish(p.reply, ackTerm) }
func (p *pulled) InProgress() error { return p.nc.Publish(p.reply, ackProgress) }

// DoubleAck acks and waits for the server's word that it has the ack.
func (p *pulled) DoubleAck(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.timeout)
		defer cancel()
	}
	_, err := p.nc.RequestWithContext(ctx, p.reply, ackAck)
	return err
}

func (p *pulled) NakWithDelay(delay time.Duration) error {
	if delay <= 0 {
		return p.Nak()
	}
	return p.nc.Publish(p.reply, fmt.Appendf(nil, `-NAK {"delay": %d}`, delay.Nanoseconds()))
}

func (p *pulled) TermWithReason(reason string) error {
	if reason == "" {
		return p.Term()
	}
	return p.nc.Publish(p.reply, []byte("+TERM "+reason))
}

// nextSubject is the subject of cons's pull requests, under js's API prefix.
func nextSubject(js jetstream.JetStream, cons jetstream.Consumer) string {
	prefix := jetstream.DefaultAPIPrefix
	switch o := js.Options(); {
	case o.APIPrefix != "":
		prefix = o.APIPrefix
		if !strings.HasSuffix(prefix, ".") {
			prefix += "."
		}
	case o.Domain != "":
		prefix = "$JS." + o.Domain + ".API."
	}
	info := cons.CachedInfo()
	return prefix + "CONSUMER.MSG.NEXT." + info.Stream + "." + info.Name
}

// nakLeft naks what came for a pull request and was not handed over (the pull loop stops, or the
// request ends first): left alone, the server would redeliver it only after the ack wait, behind
// what the next request brings. Status messages have no reply and are dropped.
func nakLeft(nc *nats.Conn, ch <-chan *nats.Msg) {
	for {
		select {
		case m := <-ch:
			if m.Reply != "" && (len(m.Data) > 0 || m.Header.Get("Status") == "") {
				_ = nc.Publish(m.Reply, ackNak)
			}
		default:
			return
		}
	}
}

// pullStatus reads a status message of a pull request: end is true when the request is over
// without an error (404 nothing there, 408 expired, 409 a limit of the request reached), err is
// set when it is over with one, and neither for an idle heartbeat. The errors are nats.go's, so
// that the pull loop's decisions (consumerGone, the pin mismatch) read them as they read Fetch's.
func pullStatus(code, description string) (end bool, err error) {
	switch code {
	case "100":
		return false, nil
	case "404", "408":
		return true, nil
	case "423":
		return true, jetstream.ErrPinIDMismatch
	case "503":
		return true, nats.ErrNoResponders
	case "400":
		return true, jetstream.ErrBadRequest
	case "409":
		d := strings.ToLower(description)
		switch {
		case strings.Contains(d, "consumer deleted"):
			return true, jetstream.ErrConsumerDeleted
		case strings.Contains(d, "leadership change"):
			return true, jetstream.ErrConsumerLeadershipChanged
		case strings.Contains(d, "server shutdown"):
			return true, jetstream.ErrServerShutdown
		case strings.Contains(d, "batch completed"), strings.Contains(d, "message size exceeds maxbytes"):
			return true, nil
		}
	}
	return true, fmt.Errorf("nats: pull request: %s %s", code, description)
}

// pullRequest runs one pull request on src for up to n messages, passing each to take as it
// arrives, on this goroutine. It returns how many came, and nil when the request ended normally
// (full, expired, or lost: no word from the server by the expiry); a pull that misses two idle
// heartbeats in a row returns jetstream.ErrNoHeartbeat.
func (c *Consumer) pullRequest(ctx context.Context, src *source, n int, expiry, hb time.Duration, take func(*nats.Msg)) (int, error) {
	nc := c.js.Conn()
	inbox := nc.NewInbox()
	// The server sends at most n messages, then one status; heartbeats come only while it has
	// none to send. Twice n is room for all of it: ChanSubscribe drops what a full channel cannot
	// take.
	ch := make(chan *nats.Msg, 2*n)
	sub, err := nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return 0, err
	}
	defer func() {
		_ = sub.Unsubscribe()
		nakLeft(nc, ch)
	}()
	req := nextRequest{
		Batch: n,
		// The server ends the request a little before the client gives up on it: 90 % of the
		// expiry, at most a second less (what Fetch does with a context's deadline).
		Expires:   expiry - min(expiry/10, time.Second),
		Heartbeat: hb,
	}
	if src.grouped {
		req.Group, req.PinID = priorityGroup, c.pin.get()
	}
	body, err := json.Marshal(req)
	if err != nil {
		return 0, err
	}
	if err := nc.PublishRequest(src.next, inbox, body); err != nil {
		return 0, err
	}
	lost := time.NewTimer(expiry)
	defer lost.Stop()
	// Heartbeats are checked per period of two, not by a timer reset per message: anything that
	// came in the last period counts.
	var beat <-chan time.Time
	if hb > 0 {
		t := time.NewTicker(2 * hb)
		defer t.Stop()
		beat = t.C
	}
	got, heard := 0, false
	for got < n {
		select {
		case m := <-ch:
			heard = true
			if len(m.Data) == 0 && len(m.Header) > 0 {
				if code := m.Header.Get("Status"); code != "" {
					end, err := pullStatus(code, m.Header.Get("Description"))
					if end || err != nil {
						return got, err
					}
					continue
				}
			}
			got++
			take(m)
		case <-beat:
			if !heard {
				return got, jetstream.ErrNoHeartbeat
			}
			heard = false
		case <-lost.C:
			return got, nil
		case <-ctx.Done():
			return got, nil
		}
	}
	return got, nil
}
