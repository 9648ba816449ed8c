package cometd_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/cobrowse-connector/cobrowse-connector/connector/cometd"
)

// FuzzDecodeMessages: any body either fails with ErrBadBody or decodes to messages that survive
// an encode/decode round trip unchanged.
func FuzzDecodeMessages(f *testing.F) {
	for _, seed := range []string{
		`[{"channel":"/meta/handshake","successful":true,"clientId":"abc","version":"1.0","supportedConnectionTypes":["long-polling","websocket"],"advice":{"reconnect":"retry","interval":0,"timeout":30000}}]`,
		`[{"channel":"/meta/connect","successful":false,"error":"402::Unknown client","advice":{"reconnect":"handshake","interval":0},"id":"7"}]`,
		`{"channel":"/service/session/joined","data":{"userId":1,"token":"123456789"},"id":"x"}`,
		`[{"channel":"/chat","data":"hi"},{"channel":"/meta/connect","successful":true}]`,
		`[{"channel":"/meta/subscribe","subscription":["/a","/b"],"successful":true}]`,
		`[{"channel":"/x","advice":{"timeout":1.5e3,"multiple-clients":true,"hosts":["h"]}}]`,
		`[]`, `[null]`, `{}`, `null`, `"x"`, `[{"channel":1}]`, `[{"channel":"/a","successful":"yes"}]`,
		"", " ", "<html>bad gateway</html>", `[{"channel":"/a"`, "\xff\xfe",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		msgs, err := cometd.DecodeMessages(body)
		if err != nil {
			if !errors.Is(err, cometd.ErrBadBody) {
				t.Fatalf("error %v does not wrap ErrBadBody", err)
			}
			return
		}
		for _, m := range msgs {
			if m.Channel == "" {
				t.Fatal("decoded a message without channel")
			}
			_ = cometd.ParseError(m.Channel, m.Error).Error()
		}
		once, err := json.Marshal(msgs)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		again, err := cometd.DecodeMessages(once)
		if err != nil {
			t.Fatalf("decode of our own encoding %s: %v", once, err)
		}
		twice, _ := json.Marshal(again)
		if string(once) != string(twice) {
			t.Fatalf("round trip changed\n%s\n%s", once, twice)
		}
	})
}

func TestDecodeMessages(t *testing.T) {
	msgs, err := cometd.DecodeMessages([]byte(` {"channel":"/a","subscription":["/x","/y"],"advice":{"interval":2.0,"timeout":100}} `))
	if err != nil || len(msgs) != 1 || msgs[0].Subscription != "/x,/y" ||
		*msgs[0].Advice.Interval != 2 || *msgs[0].Advice.Timeout != 100 {
		t.Fatalf("%+v %v", msgs, err)
	}
	for _, bad := range []string{"", "[1]", `[{"data":1}]`, "nope", `{"channel":"/a","subscription":7}`} {
		if _, err := cometd.DecodeMessages([]byte(bad)); !errors.Is(err, cometd.ErrBadBody) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestParseError(t *testing.T) {
	cases := []struct {
		raw  string
		want cometd.Error
	}{
		{"402::Unknown client", cometd.Error{Code: 402, Message: "Unknown client"}},
		{"401:abc:Unknown client", cometd.Error{Code: 401, Args: []string{"abc"}, Message: "Unknown client"}},
		{"403:xj3s,/foo/bar:Subscription denied", cometd.Error{Code: 403, Args: []string{"xj3s", "/foo/bar"}, Message: "Subscription denied"}},
		{"403::a:b", cometd.Error{Code: 403, Message: "a:b"}},
		{"session_unknown", cometd.Error{Message: "session_unknown"}},
		{"x:y:z", cometd.Error{Message: "x:y:z"}},
		{"", cometd.Error{}},
	}
	for _, tc := range cases {
		got := cometd.ParseError("/meta/connect", tc.raw)
		tc.want.Channel, tc.want.Raw = "/meta/connect", tc.raw
		if !reflect.DeepEqual(*got, tc.want) {
			t.Errorf("%q: %+v, want %+v", tc.raw, *got, tc.want)
		}
		if (got.Code == 401 || got.Code == 402) != got.SessionUnknown() {
			t.Errorf("%q: SessionUnknown %v", tc.raw, got.SessionUnknown())
		}
	}
}
