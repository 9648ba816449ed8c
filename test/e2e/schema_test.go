package e2e

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cobrowse-connector/cobrowse-connector/attach"
	"github.com/cobrowse-connector/cobrowse-connector/chat"
	"github.com/cobrowse-connector/cobrowse-connector/connector/gcb/gcbtest"
	"github.com/cobrowse-connector/cobrowse-connector/test/contract"
)

// The contract, as tools read it (docs/asyncapi.yaml, docs/schemas), holds in every e2e test:
// every message the harness publishes as the platform, a page's backend or an operator is checked
// when it is published (checkInbound, from publish; publishRaw's deliberately malformed payloads
// are not), and every message the daemon publishes is checked by its subject at the test's end
// (checkContract, from newEnv): what the watchers collected from the reporting and page streams,
// and the signals and webhook deliveries the daemon itself stores (watchDaemonInbound, from
// watchOnce). A mismatch fails the test, naming the subject, the schema and the fault.

var (
	contractOnce sync.Once
	theContract  *contract.Contract
	contractErr  error
)

// loadContract compiles the contract once for the package's tests.
func loadContract(t testing.TB) *contract.Contract {
	t.Helper()
	contractOnce.Do(func() { theContract, contractErr = contract.Load("cc") })
	if contractErr != nil {
		t.Fatalf("the NATS contract: %v", contractErr)
	}
	return theContract
}

// checkInbound checks one message the harness publishes.
func (e *env) checkInbound(subject string, data []byte, msgID string) {
	e.t.Helper()
	if err := loadContract(e.t).Check(subject, msgID, data); err != nil {
		e.t.Errorf("the harness publishes a message the contract refuses: %v", err)
	}
}

// checkContract checks, when the test ends (after the watchers and the daemon stopped: they
// were registered later), every message the watchers collected.
func (e *env) checkContract() {
	c := loadContract(e.t)
	e.t.Cleanup(func() {
		e.outMu.Lock()
		msgs := append(slices.Clone(e.out), e.pages...)
		e.outMu.Unlock()
		for _, err := range contractErrors(c, msgs) {
			e.t.Errorf("the daemon published a message the contract refuses: %v", err)
		}
	})
}

func contractErrors(c *contract.Contract, msgs []outMsg) []error {
	var errs []error
	for _, m := range msgs {
		if err := c.Check(m.subject, m.msgID, m.data); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// watchDaemonInbound checks what the daemon itself publishes beside its outbound streams, with
// Zoom enabled: the webhook deliveries its public listener stores and the signals its router makes
// of them. Each is checked as it comes; the faults are reported when the test ends.
func (e *env) watchDaemonInbound() {
	if !e.cfg.Zoom.Enabled {
		return
	}
	c := loadContract(e.t)
	var mu sync.Mutex
	var faults []error
	watch := func(stream string, filter ...string) {
		ctx, cancel := context.WithCancel(context.Background())
		cons, err := e.js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{FilterSubjects: filter})
		if err != nil {
			cancel()
			e.t.Fatalf("watching %s: %v", stream, err)
		}
		cc, err := cons.Consume(func(m jetstream.Msg) {
			if err := c.Check(m.Subject(), m.Headers().Get(jetstream.MsgIDHeader), m.Data()); err != nil {
				mu.Lock()
				faults = append(faults, err)
				mu.Unlock()
			}
		})
		if err != nil {
			cancel()
			e.t.Fatalf("watching %s: %v", stream, err)
		}
		e.t.Cleanup(func() {
			cc.Stop()
			cancel()
			mu.Lock()
			defer mu.Unlock()
			for _, err := range faults {
				e.t.Errorf("the daemon stored a message the contract refuses: %v", err)
			}
			faults = nil
		})
	}
	watch(e.cfg.NATS.Inbound.Stream, chat.SignalSubject(e.cfg.NATS.Prefix, "*", chat.SourceZoom))
	watch(e.cfg.NATS.Webhook.Stream)
}

// The check catches a message the contract refuses, naming it; and passes what the daemon
// publishes (the attach package's bytes).
func TestContractCheckCatchesAMismatch(t *testing.T) {
	c := loadContract(t)
	good, err := attach.Lifecycle{Event: attach.Joined, InteractionID: "i-1", SessionID: "s-1", Vendor: "genesys"}.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	msgs := []outMsg{
		{subject: attach.LifecycleSubject("cc", "i-1", attach.Joined), msgID: "i-1.s-1.joined", data: good},
		{subject: attach.LifecycleSubject("cc", "i-1", attach.Joined), msgID: "i-1.s-1.joined", data: []byte(`{"v":2}`)},
		{subject: attach.LifecycleSubject("cc", "i-1", attach.Activated), msgID: "i-1.s-1.activated", data: good},
	}
	errs := contractErrors(c, msgs)
	if len(errs) != 2 {
		t.Fatalf("%d faults, want 2 (v 2; event differs from the subject's): %v", len(errs), errors.Join(errs...))
	}
}

// An interaction whose events name a vendor the daemon does not know: its start fails as
// vendor_unavailable, and the failed event names that vendor, as the contract says (the other
// events name one of the vendors the daemon knows).
func TestFailedEventNamesAnUnknownVendor(t *testing.T) {
	e := newEnv(t, gcbtest.Options{}, nil)
	e.startDaemon()
	e.publish(chat.EventSubject("cc", "i-1"), chat.Event{ID: e.nextID("ev"), InteractionID: "i-1",
		Type: chat.EventCreated, AgentID: "agent-1", Vendor: "acme"}, "")
	e.startMsg("i-1", "123456789")
	f := e.expectLifecycle("i-1", attach.Failed)
	if f.Reason != "vendor_unavailable" || f.Vendor != "acme" {
		t.Fatalf("start on an unknown vendor: %+v", f)
	}
}
