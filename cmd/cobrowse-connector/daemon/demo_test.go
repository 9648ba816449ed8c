package daemon

import (
	"bytes"
	"context"
	"regexp"
	"testing"
	"time"
)

// The demo's output comes from NATS: the session id the final attach carries is the one the
// built-in Co-browse Server issued, and the summary says the server saw the Controller stop it.
func TestDemo(t *testing.T) {
	for _, end := range []string{"transferred", "closed"} {
		t.Run(end, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			var out bytes.Buffer
			if err := Demo(ctx, &out, DemoOptions{End: end}); err != nil {
				t.Fatalf("demo: %v\n%s", err, out.String())
			}
			s := out.String()
			server := regexp.MustCompile(`Co-browse Server: session (\S+) is ended \(ended by controller`).FindStringSubmatch(s)
			if server == nil {
				t.Fatalf("no server summary:\n%s", s)
			}
			for _, want := range []string{
				`CoBrowseSessionId=` + regexp.QuoteMeta(server[1]),
				`CoBrowseStartTime=\d{13} `,
				`CoBrowseEndReason=interaction_` + end,
				`(?s)Summary.*CoBrowseAssociated=No`,
				`AGENT VIEW for agent-7: http://127\.0\.0\.1:\d+/cobrowse/slave\.html#`,
			} {
				if !regexp.MustCompile(want).MatchString(s) {
					t.Errorf("output lacks %s:\n%s", want, s)
				}
			}
		})
	}
}

func TestDemoRefusesAnUnknownEnding(t *testing.T) {
	if err := Demo(t.Context(), &bytes.Buffer{}, DemoOptions{End: "vanished"}); err == nil {
		t.Fatal("no error")
	}
}
