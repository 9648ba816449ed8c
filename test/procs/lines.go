package procs

import (
	"bytes"
	"io"
	"sync"
)

// LineWriter hands each complete line of what is written to it (without its newline) to a func,
// and copies everything to a writer: a child's stdout or stderr, read as it comes. It is safe for
// concurrent use; the func runs with the writer's lock held.
type LineWriter struct {
	mu   sync.Mutex
	out  io.Writer
	fn   func(line []byte)
	part []byte
}

// maxLine bounds the part of a line kept while its end has not come: a longer one is dropped.
const maxLine = 1 << 20

// NewLineWriter returns a LineWriter that copies to out and hands each line to fn; either may be
// nil. fn must not keep the line: its bytes are reused.
func NewLineWriter(out io.Writer, fn func(line []byte)) *LineWriter {
	return &LineWriter{out: out, fn: fn}
}

// Write copies b to out, then hands on each line it completes.
func (w *LineWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.out != nil {
		if _, err := w.out.Write(b); err != nil {
			return 0, err
		}
	}
	w.part = append(w.part, b...)
	for {
		i := bytes.IndexByte(w.part, '\n')
		if i < 0 {
			break
		}
		if w.fn != nil {
			w.fn(w.part[:i])
		}
		w.part = w.part[i+1:]
	}
	if len(w.part) > maxLine { // a line without end: keep memory bounded
		w.part = w.part[:0]
	}
	return len(b), nil
}
