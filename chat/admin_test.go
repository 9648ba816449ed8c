package chat

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestReadBoundsEachRequest: an operator's read that gets no answer (a clustered consumer without
// a leader answers nothing) is bounded per request and asked again at most readTries times, even
// under a caller's deadline far away; an answer, or an error that is not a time-out, ends it at once.
func TestReadBoundsEachRequest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()

		tries := 0
		began := time.Now()
		_, err := read(ctx, func(ctx context.Context) (int, error) {
			tries++
			<-ctx.Done() // no answer
			return 0, ctx.Err()
		})
		if !errors.Is(err, context.DeadlineExceeded) || tries != readTries {
			t.Fatalf("unanswered: %d tries, err %v; want %d tries and a time-out", tries, err, readTries)
		}
		if took := time.Since(began); took != readTries*apiWait {
			t.Fatalf("unanswered: took %v, want %v", took, readTries*apiWait)
		}

		tries = 0
		v, err := read(ctx, func(ctx context.Context) (int, error) {
			if tries++; tries == 1 {
				<-ctx.Done()
				return 0, ctx.Err()
			}
			return 7, nil
		})
		if err != nil || v != 7 || tries != 2 {
			t.Fatalf("answered at the second try: %d, %v after %d tries", v, err, tries)
		}

		tries = 0
		if _, err := read(ctx, func(context.Context) (int, error) {
			tries++
			return 0, jetstream.ErrConsumerNotFound
		}); !errors.Is(err, jetstream.ErrConsumerNotFound) || tries != 1 {
			t.Fatalf("not found: %d tries, %v; want one try and the error", tries, err)
		}

		// The caller's own end stops the asking.
		short, stop := context.WithTimeout(ctx, apiWait/2)
		defer stop()
		tries = 0
		if _, err := read(short, func(ctx context.Context) (int, error) {
			tries++
			<-ctx.Done()
			return 0, ctx.Err()
		}); err == nil || tries != 1 {
			t.Fatalf("caller's deadline: %d tries, %v", tries, err)
		}
	})
}
