package bayeux

import (
	"encoding/json"
	"testing"
)

func TestMatches(t *testing.T) {
	for _, tc := range []struct {
		pattern, name string
		want          bool
	}{
		{"/a/b", "/a/b", true},
		{"/a/b", "/a/c", false},
		{"/a/*", "/a/b", true},
		{"/a/*", "/a/b/c", false},
		{"/a/*", "/a", false},
		{"/a/**", "/a/b", true},
		{"/a/**", "/a/b/c", true},
		{"/a/**", "/a", false},
		{"/a/**", "/ab/c", false},
	} {
		if got := matches(tc.pattern, tc.name); got != tc.want {
			t.Errorf("matches(%q, %q) = %v", tc.pattern, tc.name, got)
		}
	}
}

func TestValidChannel(t *testing.T) {
	for name, want := range map[string]bool{
		"/a": true, "/a/b": true, "/a/*": true, "/a/**": true,
		"": false, "/": false, "a/b": false, "/a//b": false, "/a/*/b": false, "/a/": false,
	} {
		if got := validChannel(name); got != want {
			t.Errorf("validChannel(%q) = %v", name, got)
		}
	}
}

func TestDecodeMessages(t *testing.T) {
	for _, tc := range []struct {
		body string
		n    int
		ok   bool
	}{
		{`[{"channel":"/meta/handshake","id":"1"},{"channel":"/a","id":2}]`, 2, true},
		{` {"channel":"/meta/connect"} `, 1, true},
		{`[]`, 0, true},
		{``, 0, false},
		{`"x"`, 0, false},
		{`[{"channel":`, 0, false},
	} {
		msgs, err := decodeMessages([]byte(tc.body))
		if (err == nil) != tc.ok || len(msgs) != tc.n {
			t.Errorf("decodeMessages(%q) = %d messages, %v", tc.body, len(msgs), err)
		}
	}
	// A numeric id is echoed as it came.
	msgs, _ := decodeMessages([]byte(`{"channel":"/meta/connect","id":42}`))
	r := encode(reply(&msgs[0], true))
	var back map[string]any
	if err := json.Unmarshal(r.raw, &back); err != nil || back["id"] != float64(42) || back["successful"] != true {
		t.Errorf("reply %s", r.raw)
	}
}

func TestSubscriptions(t *testing.T) {
	if s, ok := subscriptions(json.RawMessage(`"/a"`)); !ok || len(s) != 1 {
		t.Errorf("one: %v %v", s, ok)
	}
	if s, ok := subscriptions(json.RawMessage(`["/a","/b/**"]`)); !ok || len(s) != 2 {
		t.Errorf("many: %v %v", s, ok)
	}
	for _, bad := range []string{``, `""`, `[]`, `[""]`, `3`} {
		if _, ok := subscriptions(json.RawMessage(bad)); ok {
			t.Errorf("subscriptions(%q) accepted", bad)
		}
	}
}

func FuzzDecodeMessages(f *testing.F) {
	f.Add([]byte(`[{"channel":"/meta/handshake","id":"1","ext":{"ack":true}}]`))
	f.Add([]byte(`{"channel":"/service/session/join","data":{"sessionToken":"012345678","role":3}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		msgs, err := decodeMessages(body)
		if err != nil {
			return
		}
		for i := range msgs {
			_ = encode(reply(&msgs[i], true)) // every decoded message can be answered
		}
	})
}
