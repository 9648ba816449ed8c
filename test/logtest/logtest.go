// Package logtest collects log output in tests: a buffer that several goroutines may write to.
package logtest

import (
	"bytes"
	"strings"
	"sync"
	"time"
)

// Buffer is an io.Writer safe for concurrent use, for a slog handler under test.
type Buffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	written chan struct{} // closed and replaced on every write: wakes WaitFor
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.written != nil {
		close(b.written)
		b.written = nil
	}
	return b.buf.Write(p)
}

// WaitFor waits until the output holds substr, at most d; it reports whether it does. stop, when
// it becomes ready first, ends the wait early (false).
func (b *Buffer) WaitFor(substr string, d time.Duration, stop <-chan error) bool {
	return b.WaitCount(substr, 1, d, stop)
}

// WaitCount waits until the output holds substr at least n times, at most d; it reports whether
// it does. stop, when it becomes ready first, ends the wait early (false).
func (b *Buffer) WaitCount(substr string, n int, d time.Duration, stop <-chan error) bool {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		b.mu.Lock()
		if strings.Count(b.buf.String(), substr) >= n {
			b.mu.Unlock()
			return true
		}
		if b.written == nil {
			b.written = make(chan struct{})
		}
		w := b.written
		b.mu.Unlock()
		select {
		case <-w:
		case <-deadline.C:
			return false
		case <-stop: //nolint:errcheck // a signal: whatever it carries, the wait ends
			return false
		}
	}
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Tail returns the last n bytes written.
func (b *Buffer) Tail(n int) string {
	s := b.String()
	if len(s) > n {
		s = s[len(s)-n:]
	}
	return s
}
