package cometd

import (
	"testing"
	"time"
)

func TestBackoffGrowsToMax(t *testing.T) {
	c, err := New(Options{URL: "http://x", BackoffIncrement: 10 * time.Millisecond, MaxBackoff: 35 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	l := &loop{c: c}
	want := []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 30 * time.Millisecond, 35 * time.Millisecond, 35 * time.Millisecond}
	for i, w := range want {
		if got := l.nextBackoff(); got != w {
			t.Fatalf("backoff %d: %v, want %v", i, got, w)
		}
	}
}

func TestDefaults(t *testing.T) {
	c, err := New(Options{URL: "wss://h/cometd", MaxBackoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.url != "https://h/cometd" || c.opts.MaxNetworkDelay != DefaultMaxNetworkDelay ||
		c.opts.BackoffIncrement != DefaultBackoffIncrement || c.opts.MaxBackoff != DefaultBackoffIncrement ||
		len(c.transports) != 2 || c.transports[0] != TransportWebSocket {
		t.Fatalf("%+v %q %q", c.opts, c.url, c.transports)
	}
	if w := c.connectWait(); w != DefaultConnectTimeout+DefaultMaxNetworkDelay {
		t.Fatalf("connect wait before any advice: %v", w)
	}
}

func TestMergeAdvice(t *testing.T) {
	c := &Client{}
	c.mergeAdvice(&Advice{Reconnect: "retry", Interval: ptr(int64(5)), Timeout: ptr(int64(100)), MaxInterval: ptr(int64(9))}, true)
	c.mergeAdvice(nil, false)
	c.mergeAdvice(&Advice{Reconnect: "handshake", Interval: ptr(int64(0))}, false)
	a := c.advice.public()
	if a.Reconnect != "handshake" || *a.Interval != 0 || *a.Timeout != 100 || *a.MaxInterval != 9 {
		t.Fatalf("%+v", a)
	}
	c.mergeAdvice(nil, true) // a handshake reply without advice means retry
	if a := c.advice.public(); a.Reconnect != "retry" || *a.Timeout != 100 || a.Interval == nil {
		t.Fatalf("%+v", a)
	}
}
