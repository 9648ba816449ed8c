// Re-joins in flight and stops that must be retried: the parts of a session's life that outlast one
// step of the state machine.
package controller

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/connector"
)

// rejoinCall is a re-join in flight. Its goroutine sends exactly one result on done.
type rejoinCall struct {
	cancel context.CancelFunc
	done   chan rejoinResult
}

type rejoinResult struct {
	sess connector.Session
	err  error
}

// cancelRejoin gives up a re-join in flight and waits for its goroutine; a session it returned
// anyway is left without being stopped (the caller decides the session's fate).
func (a *actor) cancelRejoin() {
	if a.rejoin == nil {
		return
	}
	a.rejoin.cancel()
	r := <-a.rejoin.done
	a.rejoin = nil
	if r.sess != nil {
		cctx, cancel := context.WithTimeout(context.Background(), a.c.cfg.StopWait)
		_ = r.sess.Close(cctx)
		cancel()
	}
}

// stopByHandle stops a session without its connection (through the vendor's REST route). A stop
// that fails is kept as a pending stop, retried within seconds.
func (a *actor) stopByHandle(ctx context.Context, h connector.Handle) connector.Times {
	h.InteractionID = a.id
	times, err := a.stopHandle(ctx, h)
	if conn := a.connFor(h); conn != nil {
		// A vendor whose sessions end in the browsers needs the pages to end it.
		a.queuePages(conn.EndHandoffs(h, a.st.AgentID), h.SessionID)
	}
	if err != nil {
		a.addPendingStop(h, err)
	}
	return times
}

// addPendingStop keeps a stop that failed by every route, to be retried by the stop timer.
func (a *actor) addPendingStop(h connector.Handle, err error) {
	a.logger().Warn("stop failed by every route; retrying it shortly", "session_id", h.SessionID, "retry_in", a.c.cfg.StopRetry, "error", err)
	a.st.PendingStops = append(a.st.PendingStops, PendingStop{Handle: h, Since: time.Now()})
	a.dirty = true
	a.stopTries = 0
	a.armStopRetry()
}

func hasAgent(ps []connector.Participant) bool {
	for _, p := range ps {
		if p.Role == connector.RoleAgent {
			return true
		}
	}
	return false
}

// attachSession makes sess the live session and takes its events from now on: through Feed when
// the session can hand them over without a channel (no goroutine waits for a session that is only
// waiting), else from its Events channel on a goroutine that ends when the session closes it.
func (a *actor) attachSession(sess connector.Session) {
	a.qmu.Lock()
	a.dropStreamLocked() // the previous session's, if any
	gen := a.gen
	a.qmu.Unlock()
	a.sess = sess
	a.listening, a.streamed = false, false
	if f, ok := sess.(connector.Feeder); ok {
		a.listening, a.streamed = true, true
		f.Feed(func(ev connector.Event, ok bool) { a.feed(gen, ev, ok) })
		return
	}
	if ch := sess.Events(); ch != nil {
		a.listening, a.streamed = true, true
		stop := make(chan struct{})
		a.qmu.Lock()
		a.fwdStop = stop
		a.qmu.Unlock()
		a.c.wg.Go(func() {
			for {
				select {
				case ev, ok := <-ch:
					a.feed(gen, ev, ok)
					if !ok {
						return
					}
				case <-stop: // the actor stopped listening to this session
					return
				}
			}
		})
	}
}

// sendOwedView announces the agent view that an assignment during the re-join could not.
func (a *actor) sendOwedView() {
	if l := a.st.Live; l != nil && l.ViewOwed && a.sess != nil {
		l.ViewOwed = false
		a.dirty = true
		a.queueAgentView()
	}
}

// pendingStopFor bounds how long a stop that failed by every route keeps being retried.
const pendingStopFor = time.Hour

// maxStopRetry caps the backoff between two attempts at the pending stops.
const maxStopRetry = 30 * time.Second

// armStopRetry schedules the next attempt at the pending stops: StopRetry, doubled after each
// attempt that left some, at most maxStopRetry. The sweep retries them too.
func (a *actor) armStopRetry() {
	if a.stopRetry != nil || len(a.st.PendingStops) == 0 {
		return
	}
	d := a.c.cfg.StopRetry
	for range a.stopTries {
		if d >= maxStopRetry {
			break
		}
		d *= 2
	}
	a.stopRetry = time.AfterFunc(min(d, maxStopRetry), func() { a.kick(workStopRetry) })
}

// retryPendingStops stops again, through their saved handles, the sessions no route could stop.
func (a *actor) retryPendingStops(ctx context.Context) {
	if len(a.st.PendingStops) == 0 {
		return
	}
	kept := a.st.PendingStops[:0]
	for _, p := range a.st.PendingStops {
		p.Handle.InteractionID = a.id
		_, err := a.stopHandle(ctx, p.Handle)
		switch {
		case err == nil:
			a.logger().Info("pending stop done", "session_id", p.Handle.SessionID)
		case time.Since(p.Since) >= pendingStopFor:
			a.logger().Error("giving up a stop that failed for an hour; the server may still hold the session", "session_id", p.Handle.SessionID, "error", err)
		default:
			kept = append(kept, p)
		}
	}
	a.stopTries++
	if len(kept) != len(a.st.PendingStops) {
		a.st.PendingStops = slices.Clip(kept)
		if len(kept) == 0 {
			a.st.PendingStops = nil
		}
		a.dirty = true
		a.commitOrRetry(ctx)
	}
	a.armStopRetry()
}

// mergeTimes prefers the notification's times and fills gaps from the stop reply's.
func mergeTimes(ev, reply connector.Times) connector.Times {
	if ev.Activation.IsZero() {
		ev.Activation = reply.Activation
	}
	if ev.Deactivation.IsZero() {
		ev.Deactivation = reply.Deactivation
	}
	return ev
}

// closeSession releases the session's connection without stopping the session.
func (a *actor) closeSession(ctx context.Context) {
	if a.sess == nil {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, a.c.cfg.StopWait)
	if err := a.sess.Close(cctx); err != nil {
		a.logger().Debug("close session connection", "error", err)
	}
	cancel()
	a.stopListening()
	a.sess = nil
}

// leaveSession releases the connection of a session that is over, on a goroutine of the
// Controller's, so that the step's messages (the deactivated event, the final attach) do not wait
// for the vendor's goodbye (a Bayeux disconnect). Close is bounded by StopWait.
func (a *actor) leaveSession() {
	sess := a.sess
	if sess == nil {
		return
	}
	a.stopListening()
	a.sess = nil
	a.c.wg.Go(func() {
		cctx, cancel := context.WithTimeout(context.Background(), a.c.cfg.StopWait)
		defer cancel()
		if err := sess.Close(cctx); err != nil {
			a.c.log.Debug("close session connection", "interaction", a.id, "error", err)
		}
	})
}

// errVendorDisabled is the error of a stop for a session whose vendor is not enabled (any more).
var errVendorDisabled = errors.New("the session's co-browse vendor is not enabled")

// stopHandle stops a saved session through its vendor, bounded by StopTimeout.
func (a *actor) stopHandle(ctx context.Context, h connector.Handle) (connector.Times, error) {
	conn := a.connFor(h)
	if conn == nil {
		return connector.Times{}, errVendorDisabled
	}
	sctx, cancel := context.WithTimeout(ctx, a.c.cfg.StopTimeout)
	defer cancel()
	return conn.StopHandle(sctx, h)
}
