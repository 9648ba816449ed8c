package daemon

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestOperatorRequestDecoders: each endpoint's body is read strictly; a refusal is a badRequest
// whose description names the field and the rule, never the value.
func TestOperatorRequestDecoders(t *testing.T) {
	t.Run("list", func(t *testing.T) {
		for body, want := range map[string]ListRequest{
			``:                     {Limit: defaultListLimit},
			"  \n":                 {Limit: defaultListLimit},
			`{}`:                   {Limit: defaultListLimit},
			`{"vendor":"genesys"}`: {Vendor: "genesys", Limit: defaultListLimit},
			`{"vendor":"zoom","phase":"active","agent":"agent-1","limit":5,"after":"i-9"}`: {Vendor: "zoom", Phase: "active",
				Agent: "agent-1", Limit: 5, After: "i-9"},
			`{"limit":1000}`: {Limit: 1000},
		} {
			got, err := decodeListRequest([]byte(body))
			if err != nil || got != want {
				t.Errorf("%q: %+v %v, want %+v", body, got, err, want)
			}
		}
		for body, reason := range map[string]string{
			`not json`:                       "not JSON",
			`[]`:                             "must be a JSON object",
			`{"vendor":"webex"}`:             "field vendor: not one of genesys, zoom, cec",
			`{"phase":"ended"}`:              "field phase: not one of starting, joined, active, stopping",
			`{"agent":"a.b"}`:                "field agent: not a NATS subject token",
			`{"agent":"a b"}`:                "field agent: not a NATS subject token",
			`{"after":"i*"}`:                 "field after: not a NATS subject token",
			`{"limit":1001}`:                 "field limit: want 1 to 1000",
			`{"limit":-1}`:                   "field limit: want 1 to 1000",
			`{"limit":"5"}`:                  "field limit: want an integer",
			`{"vendor":"zoom","extra":true}`: `unknown field "extra"`,
			`{} {}`:                          "more than one JSON value",
			"{\"agent\":\"\xff\"}":           "not valid UTF-8",
			`{"agent":"` + strings.Repeat("a", 257) + `"}`: "field agent: longer than 256 bytes",
		} {
			_, err := decodeListRequest([]byte(body))
			if _, ok := errors.AsType[*badRequest](err); !ok || !strings.Contains(err.Error(), reason) {
				t.Errorf("%q: %v, want a bad request saying %q", body, err, reason)
			}
		}
	})
	t.Run("get", func(t *testing.T) {
		if got, err := decodeGetRequest([]byte(`{"interactionId":"0007Ka5TDDHJ003F"}`)); err != nil || got.InteractionID != "0007Ka5TDDHJ003F" {
			t.Fatalf("%+v %v", got, err)
		}
		for body, reason := range map[string]string{
			``:                           "the body is empty",
			`{}`:                         "field interactionId: required",
			`{"interactionId":""}`:       "field interactionId: required",
			`{"interactionId":"i.1"}`:    "field interactionId: not a NATS subject token",
			`{"interactionId":7}`:        "field interactionId: want a string",
			`{"interactionId":"i-1","x"`: "not JSON",
			`{"id":"i-1"}`:               `unknown field "id"`,
		} {
			_, err := decodeGetRequest([]byte(body))
			if _, ok := errors.AsType[*badRequest](err); !ok || !strings.Contains(err.Error(), reason) {
				t.Errorf("%q: %v, want a bad request saying %q", body, err, reason)
			}
		}
	})
	t.Run("stop", func(t *testing.T) {
		got, err := decodeStopRequest([]byte(`{"interactionId":"i-1","reason":"customer asked","requestedBy":"ops:ann","id":"op_42-a"}`))
		if err != nil || got != (StopRequest{InteractionID: "i-1", Reason: "customer asked", RequestedBy: "ops:ann", ID: "op_42-a"}) {
			t.Fatalf("%+v %v", got, err)
		}
		for body, reason := range map[string]string{
			`{"reason":"x"}`: "field interactionId: required",
			`{"interactionId":"i-1","reason":"two\nlines"}`:                            "field reason: a control character",
			`{"interactionId":"i-1","requestedBy":"` + strings.Repeat("é", 201) + `"}`: "field requestedBy: longer than 200 characters",
			`{"interactionId":"i-1","id":"op 1"}`:                                      "field id: only letters, digits",
			`{"interactionId":"i-1","id":"` + strings.Repeat("a", 65) + `"}`:           "field id: longer than 64 bytes",
			`{"interactionId":"i-1","reason":5}`:                                       "field reason: want a string",
			`null`:                                                                     "field interactionId: required",
			strings.Repeat(" ", maxRequestBody+1):                                      "more than 16384 bytes",
		} {
			_, err := decodeStopRequest([]byte(body))
			if _, ok := errors.AsType[*badRequest](err); !ok || !strings.Contains(err.Error(), reason) {
				t.Errorf("%q: %v, want a bad request saying %q", body, err, reason)
			}
		}
	})
}

// FuzzOperatorRequests: any body of a sessions request is read without a panic; what is
// accepted keeps the rules (ids are subject tokens, notes are one line and bounded, the limit is
// in range), and what is refused is a badRequest.
func FuzzOperatorRequests(f *testing.F) {
	for _, s := range []string{``, `{}`, `{"vendor":"genesys"}`, `{"vendor":"zoom","phase":"active","agent":"a-1","limit":5,"after":"i-9"}`,
		`{"interactionId":"i-1"}`, `{"interactionId":"i-1","reason":"r","requestedBy":"ann","id":"op-1"}`, `{"interactionId":"i.1"}`,
		`{"limit":1e3}`, `{"agent":"\u0000"}`, `[1,2]`, `"x"`, `{"interactionId":"i-1"}{}`} {
		f.Add([]byte(s))
	}
	token := func(t *testing.T, what, v string) {
		if v == "" || len(v) > maxIDLen || strings.ContainsAny(v, ".*> \t\r\n") || !utf8.ValidString(v) {
			t.Fatalf("%s %q accepted", what, v)
		}
	}
	refused := func(t *testing.T, err error) {
		if _, ok := errors.AsType[*badRequest](err); !ok {
			t.Fatalf("refusal %T %v is not a bad request", err, err)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, err := decodeListRequest(b); err == nil {
			if r.Limit < 1 || r.Limit > maxListLimit {
				t.Fatalf("limit %d accepted", r.Limit)
			}
			if r.Agent != "" {
				token(t, "agent", r.Agent)
			}
		} else {
			refused(t, err)
		}
		if r, err := decodeGetRequest(b); err == nil {
			token(t, "interactionId", r.InteractionID)
		} else {
			refused(t, err)
		}
		if r, err := decodeStopRequest(b); err == nil {
			token(t, "interactionId", r.InteractionID)
			for _, note := range []string{r.Reason, r.RequestedBy} {
				if utf8.RuneCountInString(note) > maxNoteLen || strings.ContainsAny(note, "\r\n\x00") {
					t.Fatalf("note %q accepted", note)
				}
			}
			if len(r.ID) > maxStopIDLen || strings.ContainsAny(r.ID, ". ") {
				t.Fatalf("id %q accepted", r.ID)
			}
		} else {
			refused(t, err)
		}
	})
}
