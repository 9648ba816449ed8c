package zoom

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// isTokenAPIID is the rule of interactionId and agentId, written out independently of
// checkTokenAPIID: 1 to 256 runes of valid UTF-8, no '.', '*', '>', whitespace or control
// character.
func isTokenAPIID(s string) bool {
	return s != "" && utf8.ValidString(s) && utf8.RuneCountInString(s) <= 256 && !strings.ContainsFunc(s, func(r rune) bool {
		return r == '.' || r == '*' || r == '>' || unicode.IsSpace(r) || unicode.IsControl(r)
	})
}

// FuzzDecodeTokenRequest: DecodeTokenRequest never panics; a refusal carries no request and at
// most 20 problems, each with a reason; an accepted body is one JSON object of at most 4 KiB with
// only interactionId, role and agentId, whose values are what the request says and satisfy every
// rule (role 1 or 2 as the strings or the integers, valid ids, agentId exactly for role agent).
func FuzzDecodeTokenRequest(f *testing.F) {
	for _, s := range []string{
		`{"interactionId":"I1","role":"customer"}`,
		`{"interactionId":"I1","role":1}`,
		`{"interactionId":"I1","role":"agent","agentId":"A1"}`,
		`{"interactionId":"I1","role":2,"agentId":"A1"}`,
		`{"interactionId":"I1","role":1,"agentId":null}`,
		" {\"role\":\"agent\" , \"agentId\":\"agent@corp\",\"interactionId\":\"0007Ka5TDDHJ003F\"}\n",
		`{"interactionId":"I-😀_é","role":"customer"}`,
		`{"interactionId":"I1","role":"customer","agentId":"A1"}`,
		`{"interactionId":"I1","role":"agent"}`,
		`{"interactionId":"I1","role":"agent","agentId":""}`,
		`{"interactionId":"I1","role":"customer","userId":"u"}`,
		`{"interactionId":"I1","role":"customer","user_id":"u","userName":"n"}`,
		`{"interactionId":"I1","role":"customer","x":1}`,
		`{"interactionId":"I1","role":"customer","interactionId":"I2"}`,
		`{"interactionId":"I1","role":"customer"} {}`,
		`{"interactionId":"I1","role":"customer"}]`,
		`{"interactionId":"a.b","role":"customer"}`,
		`{"interactionId":"a*","role":"agent","agentId":"b>"}`,
		`{"interactionId":"a\u0000","role":"customer"}`,
		`{"interactionId":"a\ud800","role":"customer"}`,
		"{\"interactionId\":\"a\xff\",\"role\":\"customer\"}",
		`{"interactionId":"I1","role":1.0}`,
		`{"interactionId":"I1","role":1e0}`,
		`{"interactionId":"I1","role":"1"}`,
		`{"interactionId":"I1","role":"AGENT","agentId":"A1"}`,
		`{"interactionId":"I1","role":[2]}`,
		`{"interactionId":42,"role":1}`,
		`[{"interactionId":"I1","role":1}]`,
		`"I1"`, `null`, `{}`, ``, ` `, `{`, `{"`, `{"interactionId"`, `{"interactionId":}`,
		`{"interactionId":"` + strings.Repeat("x", 257) + `","role":1}`,
		`{"interactionId":"I1","role":1,"p":` + strings.Repeat("[", 500) + strings.Repeat("]", 500) + `}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, errs := DecodeTokenRequest(body)
		if len(errs) > 0 {
			if req != (TokenAPIRequest{}) {
				t.Fatalf("refused with %v but returned %+v", errs, req)
			}
			if len(errs) > maxTokenFieldErrors {
				t.Fatalf("%d problems, more than %d", len(errs), maxTokenFieldErrors)
			}
			for _, e := range errs {
				if e.Reason == "" {
					t.Fatalf("a problem without a reason: %+v", errs)
				}
			}
			return
		}
		if errs != nil {
			t.Fatal("accepted with a non-nil, empty problem list")
		}
		if len(body) > MaxTokenRequestBody || !utf8.Valid(body) || !json.Valid(body) {
			t.Fatalf("accepted a body that is too long, not UTF-8 or not JSON: %q", body)
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(body, &m); err != nil || m == nil {
			t.Fatalf("accepted %q, which is not a JSON object: %v", body, err)
		}
		for k := range m {
			if k != "interactionId" && k != "role" && k != "agentId" {
				t.Fatalf("accepted the property %q in %q", k, body)
			}
		}
		var iid string
		if err := json.Unmarshal(m["interactionId"], &iid); err != nil || iid != req.InteractionID || !isTokenAPIID(iid) {
			t.Fatalf("accepted interactionId %q (raw %s) in %q", req.InteractionID, m["interactionId"], body)
		}
		role := string(bytes.TrimSpace(m["role"]))
		switch req.Role {
		case RoleCustomer:
			if role != `"customer"` && role != "1" {
				t.Fatalf("role customer from %s", role)
			}
			if a, ok := m["agentId"]; req.AgentID != "" || ok && string(bytes.TrimSpace(a)) != "null" {
				t.Fatalf("accepted a customer request with agentId %q (raw %s)", req.AgentID, a)
			}
		case RoleAgent:
			if role != `"agent"` && role != "2" {
				t.Fatalf("role agent from %s", role)
			}
			var agent string
			if err := json.Unmarshal(m["agentId"], &agent); err != nil || agent != req.AgentID || !isTokenAPIID(agent) {
				t.Fatalf("accepted agentId %q (raw %s) in %q", req.AgentID, m["agentId"], body)
			}
		default:
			t.Fatalf("accepted role %d from %s", req.Role, role)
		}
		// An accepted request mints: the derived claims pass the minter's rules.
		tr := CustomerTokenRequest(req.InteractionID)
		if req.Role == RoleAgent {
			tr = AgentTokenRequest(req.InteractionID, req.AgentID)
		}
		if err := checkUserField("user_id", tr.UserID); err != nil {
			t.Fatal(err)
		}
		if err := checkUserField("user_name", tr.UserName); err != nil {
			t.Fatalf("agentId %q: %v", req.AgentID, err)
		}
	})
}
