package natstest

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

func TestRestartKeepsStreams(t *testing.T) {
	s := Start(t)
	nc := Connect(t, s)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}}); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	s = s.Restart(t)
	js2, err := jetstream.New(Connect(t, s))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js2.Stream(ctx, "S"); err != nil {
		t.Fatalf("stream lost across restart: %v", err)
	}
}
