package cometd

import (
	"encoding/json"
	"reflect"
	"testing"
)

// fastSeeds are bodies of the shapes servers send, and near misses.
var fastSeeds = []string{
	`[{"channel":"/meta/connect","successful":true,"advice":{"reconnect":"retry","interval":0,"timeout":30000},"id":"5","clientId":"b52fa709bacfabb079de4ad1"}]`,
	`[{"id":"4","successful":true,"channel":"/service/session/join","data":{"userToken":"u-1","sessionHistoryId":"h","participants":[{"role":1}]}}]`,
	`[{"channel":"/service/session/joined","data":{"userId":1,"token":"123456789"},"id":"x"},{"channel":"/meta/connect","successful":true}]`,
	`{"channel":"/meta/connect","successful":false,"error":"402::Unknown client","advice":{"reconnect":"handshake","interval":0}}`,
	`[{"channel":"/meta/handshake","successful":true,"clientId":"abc","version":"1.0","supportedConnectionTypes":["websocket"]}]`,
	`[{"channel":"/a","data":"x\"y","ext":{"ack":true}}]`,
	`[{"channel":"/a","data":null}]`, `[{"channel":"/a","advice":{"timeout":1.5e3}}]`, `[{"channel":"/a","advice":{"interval":-0}}]`,
	`[{"channel":"/a","advice":{"interval":007}}]`, `[{"channel":"/a","Channel":"/b"}]`, `[{"channel":"/a","channel":"/b"}]`,
	`[{"channel":"/a\u0041"}]`, `[{"channel":""}]`, `[]`, `[{"channel":"/a"},]`, `[{"channel":"/a"}] x`, `[{"channel":"/a","data":[1,,2]}]`,
	`[{"channel":"/a","data":{"k":1} }]`, `[{"channel":"/a","subscription":["/x","/y"]}]`, `[{"channel":"/a","successful":null}]`,
	"[{\"channel\":\"/a\xff\"}]", `[{"channel":"/a","data":12345678901234567890}]`, `[{"channel":"/a","advice":{"timeout":1234567890123456789}}]`,
}

// FuzzFastMessages: for every body the fast decoder takes, the reference decodes the same
// messages; and DecodeMessages answers as the reference does for any body.
func FuzzFastMessages(f *testing.F) {
	for _, s := range fastSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		want, werr := decodeMessages(body)
		got, ok := fastMessages(body)
		if ok {
			if werr != nil {
				t.Fatalf("fast took %q, the reference refuses it: %v", body, werr)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%q:\nfast %#v\nref  %#v", body, got, want)
			}
		}
		all, err := DecodeMessages(body)
		if (err != nil) != (werr != nil) || !reflect.DeepEqual(all, want) {
			t.Fatalf("%q: DecodeMessages %#v, %v; reference %#v, %v", body, all, err, want, werr)
		}
	})
}

// TestFastMessagesTakesTheUsualShapes: the replies and deliveries a session lives on go the fast
// way (the fuzz test only checks that what it takes is right).
func TestFastMessagesTakesTheUsualShapes(t *testing.T) {
	for _, s := range fastSeeds[:4] {
		if _, ok := fastMessages([]byte(s)); !ok {
			t.Errorf("left to the reference: %s", s)
		}
	}
}

func BenchmarkDecodeConnectReply(b *testing.B) {
	body := []byte(fastSeeds[0])
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := fastMessages(body); !ok {
				b.Fatal("not taken")
			}
		}
	})
	b.Run("reference", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeMessages(body); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestAppendConnectWritesWhatEncodingJSONWrites: for the connects it takes, appendConnect writes
// the bytes json.Marshal writes; it refuses every other shape and every string JSON escapes.
func TestAppendConnectWritesWhatEncodingJSONWrites(t *testing.T) {
	zero, thirty := int64(0), int64(30000)
	yes := true
	cases := []struct {
		m    Message
		take bool
	}{
		{Message{Channel: "/meta/connect", ID: "12", ClientID: "b52fa709bacfabb079de4ad1", ConnectionType: "long-polling"}, true},
		{Message{Channel: "/meta/connect", ID: "1", ClientID: "c", ConnectionType: "websocket", Advice: &Advice{Timeout: &zero}}, true},
		{Message{Channel: "/meta/connect", Advice: &Advice{Timeout: &thirty}}, true},
		{Message{Channel: "/meta/connect", Advice: &Advice{}}, true},
		{Message{Channel: "/meta/connect"}, true},
		{Message{Channel: ""}, true},
		{Message{Channel: "/meta/connect", ClientID: "a<b"}, false},
		{Message{Channel: "/meta/connect", ClientID: "a\"b"}, false},
		{Message{Channel: "/meta/connect", ClientID: "é"}, false},
		{Message{Channel: "/meta/connect", ID: "1\n"}, false},
		{Message{Channel: "/meta/connect", Advice: &Advice{Reconnect: "retry"}}, false},
		{Message{Channel: "/meta/connect", Advice: &Advice{Interval: &zero}}, false},
		{Message{Channel: "/meta/subscribe", Subscription: "/a"}, false},
		{Message{Channel: "/a", Data: []byte(`{}`)}, false},
		{Message{Channel: "/a", Successful: &yes}, false},
		{Message{Channel: "/meta/handshake", Version: "1.0", SupportedConnectionTypes: []string{"websocket"}}, false},
	}
	for _, c := range cases {
		got, ok := appendConnect([]byte("x"), &c.m)
		if ok != c.take {
			t.Fatalf("%+v: taken %v, want %v", c.m, ok, c.take)
		}
		if !ok {
			if string(got) != "x" {
				t.Fatalf("%+v: refused but wrote %q", c.m, got)
			}
			continue
		}
		want, err := json.Marshal([]Message{c.m})
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != "x"+string(want) {
			t.Fatalf("%+v:\n got %s\nwant %s", c.m, got[1:], want)
		}
	}
	for b := range 256 { // every byte JSON writes as it is, and no other, is plain
		s := string([]byte{byte(b)})
		enc, _ := json.Marshal(s)
		if plain := plainJSON(s); plain != (string(enc) == `"`+s+`"`) {
			t.Fatalf("byte %#x: plainJSON %v, encoding/json writes %s", b, plain, enc)
		}
	}
}
