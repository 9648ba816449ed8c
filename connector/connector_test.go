package connector

import (
	"errors"
	"fmt"
	"testing"
)

func TestMaskToken(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"535176834", "******834"},
		{"", ""},
		{"123456", "******"},
		{"1234567", "****567"},
		{"abcdefghijklmnop", "*************nop"},
	} {
		if got := MaskToken(tc.in); got != tc.want {
			t.Errorf("MaskToken(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestServerErrorWrapsSentinelAndCause(t *testing.T) {
	cause := errors.New("dial tcp: refused")
	err := fmt.Errorf("join: %w", &ServerError{Op: "get session", Node: "http://n1", Kind: ErrUnavailable, Err: cause})
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, cause) || errors.Is(err, ErrRefused) {
		t.Fatalf("errors.Is does not see the sentinel and the cause: %v", err)
	}
	refused := &ServerError{Op: "join", Node: "http://n1", Kind: ErrRefused, Reason: "agent busy"}
	if got := ReasonOf(fmt.Errorf("x: %w", refused)); got != "agent busy" {
		t.Fatalf("ReasonOf = %q", got)
	}
	if got := ReasonOf(cause); got != cause.Error() {
		t.Fatalf("ReasonOf(plain) = %q", got)
	}
}

func TestEndReasonValid(t *testing.T) {
	for _, r := range []EndReason{ParticipantExit, InteractionTransferred, InteractionClosed, InteractionTimeout, NoAgentJoin, ServerLost, JoinFailed, Replaced, Shutdown} {
		if !r.Valid() {
			t.Errorf("%s not valid", r)
		}
	}
	if EndReason("bogus").Valid() {
		t.Error("bogus is valid")
	}
}

func TestNotLiveIsAKindOfNotFound(t *testing.T) {
	err := fmt.Errorf("join: %w", &ServerError{Op: "get session", Node: "http://n1", Kind: ErrNotLive})
	if !errors.Is(err, ErrNotLive) || !errors.Is(err, ErrNotFound) || errors.Is(err, ErrRefused) {
		t.Fatalf("%v", err)
	}
	if errors.Is(&ServerError{Kind: ErrNotFound}, ErrNotLive) {
		t.Fatal("not found is not live")
	}
}
