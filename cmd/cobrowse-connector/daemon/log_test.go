package daemon

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

// TestDurationsAreLoggedAsText: every handler the daemon builds writes a duration as "15s", not
// as nanoseconds, whichever package logged it.
func TestDurationsAreLoggedAsText(t *testing.T) {
	for _, format := range []string{"json", "text", "auto"} {
		var b bytes.Buffer
		log, err := NewLogger(&b, format, "info")
		if err != nil {
			t.Fatal(err)
		}
		log.With("bound", 15*time.Second).Info("x", "wait", 1500*time.Millisecond)
		out := b.String()
		if format == "text" {
			if !bytes.Contains(b.Bytes(), []byte("bound=15s")) || !bytes.Contains(b.Bytes(), []byte("wait=1.5s")) {
				t.Fatalf("%s: %s", format, out)
			}
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(b.Bytes(), &m); err != nil {
			t.Fatalf("%s: %v: %s", format, err, out)
		}
		if m["bound"] != "15s" || m["wait"] != "1.5s" {
			t.Fatalf("%s: durations %v and %v, want \"15s\" and \"1.5s\"", format, m["bound"], m["wait"])
		}
	}
}
