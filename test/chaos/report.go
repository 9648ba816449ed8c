package main

import (
	"bufio"
	"bytes"
	"cmp"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/test/chaos/control"
)

// result is what the run counted.
type result struct {
	n, lost, doubled, liveAfterClose, endedByRestart, serverLost, failed int
	// replicas mode only: the line then ends with moved, the interactions that changed owner while
	// in flight (not counted against the daemon: what it did with them is in the counters before).
	replicas bool
	moved    int

	offenders []offense
	settled   bool

	// Not counted against the daemon, said on stderr to help reading the line.
	endReasons    map[string]int // deactivated reasons, one per session
	reasonVsSrv   map[string]int // "reported reason <- server's EndedBy", one per session
	failedReasons map[string]int // "reason: detail"
	noStart       []string       // interactions whose session or start message never made it
	liveUnclosed  []string       // sessions live at the end without a final attach (their work failed)
	repeats       int            // attach (interactionId, seq) stored twice with the SAME content
	blind         []string       // server_lost after a participant left unwitnessed (not counted)
	odd           []string
}

type offense struct {
	iid, token, what string
	keys             []string // what to look for in the daemon's log
}

// line is the one line the harness prints. Single mode's line is as it always was (scripts parse
// it); replicas mode adds moved at the end.
func (r *result) line() string {
	l := fmt.Sprintf("chaos: interactions=%d lost=%d doubled=%d live_after_close=%d ended_by_restart=%d server_lost=%d failed=%d",
		r.n, r.lost, r.doubled, r.liveAfterClose, r.endedByRestart, r.serverLost, r.failed)
	if r.replicas {
		l += fmt.Sprintf(" moved=%d", r.moved)
	}
	return l
}

// clean: nothing lost, nothing stored twice, nothing left live after its end was reported, and
// no session lost to anything but a node that died under it.
func (r *result) clean() bool {
	return r.lost == 0 && r.doubled == 0 && r.liveAfterClose == 0 && r.endedByRestart == 0
}

func (r *result) offend(it *interaction, what string, keys ...string) {
	r.offenders = append(r.offenders, offense{iid: it.id, token: mask(it.sess.Token), what: what, keys: append([]string{`"interaction":"` + it.id + `"`}, keys...)})
}

// count makes the counts from the outbound stream (the observer) and the server's sessions.
//
//   - lost: a start message PubAck'd for which neither a join attach (an attach whose data names
//     the session) nor a failed event was stored;
//   - doubled: an (interactionId, seq) stored twice with different content, or a
//     CoBrowseSessionsQuantity above the distinct session ids stored for the interaction;
//   - live_after_close: a session still live at the server after its interaction's final attach;
//   - ended_by_restart: a session ended as server_lost though no node kill touched it (daemon
//     kills and NATS restarts touch no node: the daemon must come back to its sessions);
//   - server_lost: every session ended as server_lost; failed: every failed event stored;
//   - moved (replicas mode): see countMoved.
func (h *harness) count(sessions []control.Session) *result {
	r := &result{n: h.opt.n, endReasons: map[string]int{}, reasonVsSrv: map[string]int{}, failedReasons: map[string]int{}}
	if h.replicated() {
		r.replicas, r.moved = true, h.countMoved()
	}
	byToken := make(map[string]control.Session, len(sessions))
	for _, s := range sessions {
		byToken[s.Token] = s
	}
	h.faultMu.Lock()
	touched := maps.Clone(h.touched)
	h.faultMu.Unlock()

	h.obs.mu.Lock()
	defer h.obs.mu.Unlock()
	r.odd = slices.Clone(h.obs.odd)
	for _, it := range h.inters {
		if it.sess.Token == "" || !it.startAcked {
			r.noStart = append(r.noStart, fmt.Sprintf("%s (%s)", it.id, strings.Join(it.notes, "; ")))
			continue
		}
		hid := it.sess.HistoryID
		x := h.obs.byIID[it.id]
		srv, known := byToken[it.sess.Token]
		failed := x.failed()
		r.failed += len(failed)
		for _, f := range failed {
			r.failedReasons[f.Reason+": "+f.Detail]++
		}

		if !x.joinAttached(hid) && len(failed) == 0 {
			r.lost++
			r.offend(it, fmt.Sprintf("lost: start message PubAck'd, no join attach and no failed event (server: %s)", describe(srv, known)), hid)
		}

		if x != nil {
			for _, seq := range slices.Sorted(maps.Keys(x.attaches)) {
				if n := len(x.attaches[seq]); n > 1 {
					r.doubled++
					r.offend(it, fmt.Sprintf("doubled: attach seq %d stored with %d different contents", seq, n), hid)
				}
			}
			stored := 0
			maxQ := 0
			for _, u := range x.updates {
				maxQ = max(maxQ, u.Data.SessionsQuantity)
				stored++
			}
			distinct := 0
			for _, ps := range x.attaches {
				distinct += len(ps)
			}
			r.repeats += stored - distinct
			if maxQ > len(x.sessions) {
				r.doubled++
				r.offend(it, fmt.Sprintf("doubled: CoBrowseSessionsQuantity %d with %d distinct session ids", maxQ, len(x.sessions)), hid)
			}
		}

		final := x.finalAttached(hid)
		if final && known && srv.Live {
			r.liveAfterClose++
			r.offend(it, fmt.Sprintf("live_after_close: final attach stored, the session is still live at the server (%s)", describe(srv, known)), hid)
		}
		if !final && known && srv.Live {
			r.liveUnclosed = append(r.liveUnclosed, fmt.Sprintf("%s %s (%s)", it.id, mask(it.sess.Token), describe(srv, known)))
		}

		deact := x.deactivated(hid)
		var lostEnd *event
		for i, l := range deact {
			r.endReasons[l.Reason]++
			if known {
				r.reasonVsSrv[l.Reason+"<-"+cmp.Or(srv.EndedBy, "live")]++
			}
			if l.Reason == "server_lost" && lostEnd == nil {
				lostEnd = &deact[i]
			}
		}
		if len(deact) > 1 {
			r.odd = append(r.odd, fmt.Sprintf("%s: %d deactivated events for one session", it.id, len(deact)))
		}
		if lostEnd != nil {
			r.serverLost++
			switch why := h.blindExit(it, lostEnd.stored); {
			case touched[it.sess.Token] || known && srv.EndedBy == "node":
				// its node died under it: server_lost is the right answer
			case why != "":
				r.blind = append(r.blind, fmt.Sprintf("%s %s %s by %s: %s", it.id, mask(it.sess.Token), it.ending, srv.EndedBy, why))
			default:
				r.endedByRestart++
				r.offend(it, fmt.Sprintf("ended_by_restart: ended as server_lost, but no node kill touched it (server: %s)", describe(srv, known)), hid)
			}
		}
	}
	return r
}

// blindExit says why a session that a participant ended, and that the daemon reported as
// server_lost, is not counted against a restart: no daemon life could both witness that exit and
// report it. The server gives no reason for an end, so a daemon that finds the session ended when
// it re-joins cannot tell a participant's exit from a loss; and it is the participant, not the
// restart, that ended the session:
//
//   - no Controller was present when the participant left (the dead daemon's had expired and the
//     next life had not joined yet);
//   - the Controller present was the one a killed daemon had left behind (the next life had not
//     taken over yet);
//   - the daemon was killed after the exit and before the end was stored on NATS (the life that
//     saw the deactivated notification died before it could report it).
//
// In replicas mode only the kills of the replica that owned the interaction then count: the
// Controllers the other replicas held lived on.
//
// It returns "" when the exit was witnessed by a daemon that lived on to report it: a
// server_lost then is the daemon's fault and counts.
func (h *harness) blindExit(it *interaction, stored time.Time) string {
	if !it.exitOK {
		return ""
	}
	if it.exitCtl == "" {
		return "no Controller was present when the participant left"
	}
	changes := h.ownerChanges()
	h.faultMu.Lock()
	defer h.faultMu.Unlock()
	for _, k := range h.kills {
		if k.controllers[it.sess.Token] == it.exitCtl && h.ownedBy(it, k, changes) {
			return "the Controller present when the participant left was a killed daemon's"
		}
	}
	for _, k := range h.kills {
		if it.exitAt.Before(k.at) && k.at.Before(stored) && h.ownedBy(it, k, changes) {
			return "the daemon was killed after the participant left and before the end was stored"
		}
	}
	return ""
}

func describe(s control.Session, known bool) string {
	if !known {
		return "unknown to the server"
	}
	var roles []string
	for _, u := range s.Users {
		roles = append(roles, map[int]string{1: "customer", 2: "agent", 3: "controller"}[u.Role])
	}
	state := "live, " + s.State
	if !s.Live {
		state = "ended by " + s.EndedBy
	}
	return fmt.Sprintf("%s on %s, users present [%s]", state, s.Node, strings.Join(roles, " "))
}

// explain says on w what the line does not: the faults, how sessions ended, why work failed,
// and each offender with what the daemon logged about it.
func (r *result) explain(w io.Writer, h *harness) {
	h.outMu.Lock()
	defer h.outMu.Unlock()
	fmt.Fprintf(w, "chaos: end reasons: %s\n", histogram(r.endReasons))
	fmt.Fprintf(w, "chaos: end reason <- who ended it at the server: %s\n", histogram(r.reasonVsSrv))
	if len(r.failedReasons) > 0 {
		fmt.Fprintf(w, "chaos: failed events: %s\n", histogram(r.failedReasons))
	}
	if n := h.daemonCrashes.Load(); n > 0 {
		fmt.Fprintf(w, "chaos: FINDING: the daemon exited on its own %d times (see above)\n", n)
	}
	logs := h.daemonLogs()
	if n := grepCount(logs, "controller already joined"); n > 0 {
		fmt.Fprintf(w, "chaos: the daemon's log names '403::controller already joined' %d times\n", n)
	}
	if n := grepCount(logs, "WARNING: DATA RACE"); n > 0 {
		fmt.Fprintf(w, "chaos: FINDING: the race detector reported %d data races in the daemon (see %s)\n", n, logNames(logs))
	}
	if !r.settled {
		fmt.Fprintf(w, "chaos: not every interaction had its final attach or a failed event within -settle=%v\n", h.opt.settle)
	}
	if r.repeats > 0 {
		fmt.Fprintf(w, "chaos: %d attach messages were stored twice with the same content (the duplicate window did not catch them)\n", r.repeats)
	}
	for _, s := range r.blind {
		fmt.Fprintf(w, "chaos: server_lost, not counted (a participant left while no daemon could witness it): %s\n", s)
	}
	for _, s := range r.noStart {
		fmt.Fprintf(w, "chaos: not started (not counted): %s\n", s)
	}
	for _, s := range r.liveUnclosed {
		fmt.Fprintf(w, "chaos: live at the end without a final attach (its work failed): %s\n", s)
	}
	for _, s := range r.odd {
		fmt.Fprintf(w, "chaos: odd: %s\n", s)
	}
	if len(r.offenders) == 0 {
		return
	}
	fmt.Fprintf(w, "chaos: %d offenders:\n", len(r.offenders))
	for i, o := range r.offenders {
		fmt.Fprintf(w, "  %s %s %s\n", o.iid, o.token, o.what)
		if i < 10 {
			for _, l := range grepLines(logs, o.keys, 4) {
				fmt.Fprintf(w, "      %s\n", l)
			}
		}
	}
}

func histogram(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}

// logNames are the files' names, for a message.
func logNames(paths []string) string {
	names := make([]string, len(paths))
	for i, p := range paths {
		names[i] = filepath.Base(p)
	}
	return strings.Join(names, ", ")
}

// grepCount counts the lines of the files that hold s.
func grepCount(paths []string, s string) int {
	n := 0
	for _, path := range paths {
		f, err := os.Open(path)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
		for sc.Scan() {
			if bytes.Contains(sc.Bytes(), []byte(s)) {
				n++
			}
		}
		_ = f.Close()
	}
	return n
}

// grepLines returns up to n warning or error lines of the daemons' logs that name one of keys,
// each after its log's name ("daemon:" in single mode, as ever; "r2:" in replicas mode).
func grepLines(paths []string, keys []string, n int) []string {
	var out []string
	for _, path := range paths {
		if len(out) >= n {
			break
		}
		out = append(out, grepFile(path, strings.TrimPrefix(strings.TrimSuffix(filepath.Base(path), ".log"), "daemon-"), keys, n-len(out))...)
	}
	return out
}

func grepFile(path, label string, keys []string, n int) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() && len(out) < n {
		line := sc.Text()
		if !strings.Contains(line, `"level":"WARN"`) && !strings.Contains(line, `"level":"ERROR"`) {
			continue
		}
		for _, k := range keys {
			if k != "" && strings.Contains(line, k) {
				if len(line) > 400 {
					line = line[:400] + "..."
				}
				out = append(out, label+": "+line)
				break
			}
		}
	}
	return out
}
