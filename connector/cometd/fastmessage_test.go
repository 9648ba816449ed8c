package cometd

import (
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
