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

// TestDemoZoom: the demo on Zoom goes through the token endpoint, the customer's PIN in chat, the
// agent's desk URL, the webhooks and the end the pages are asked for, and its final attach names
// the session the built-in Zoom started. No JWT is printed whole.
func TestDemoZoom(t *testing.T) {
	for _, end := range []string{"transferred", "closed"} {
		t.Run(end, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			var out bytes.Buffer
			if err := Demo(ctx, &out, DemoOptions{Vendor: "zoom", End: end}); err != nil {
				t.Fatalf("demo: %v\n%s", err, out.String())
			}
			s := out.String()
			zoomSession := regexp.MustCompile(`Zoom: session (\S+) is ended \(ended by end\)`).FindStringSubmatch(s)
			if zoomSession == nil {
				t.Fatalf("no Zoom summary:\n%s", s)
			}
			for _, want := range []string{
				`token endpoint: \.\.\.\S{4} \(\d+ characters\)`,
				`chat customer customer-42: \{start:\d{6}\}`,
				`AGENT VIEW for agent-7: https://\S+/desk\?access_token=\.\.\.`,
				`WEBHOOK cobrowse.session_user_joined from Zoom -> 200`,
				`signal zoom user_joined \(agent\) about session \S+ for interaction`,
				`CO-BROWSE activated`,
				`PAGE end to the customer's page`,
				`CoBrowseSessionId=` + regexp.QuoteMeta(zoomSession[1]),
				`CoBrowseEndReason=interaction_` + end,
			} {
				if !regexp.MustCompile(want).MatchString(s) {
					t.Errorf("output lacks %s:\n%s", want, s)
				}
			}
			if regexp.MustCompile(`eyJ[A-Za-z0-9_-]{10,}`).MatchString(s) {
				t.Errorf("a JWT is printed whole:\n%s", s)
			}
		})
	}
}

// TestDemoCEC: the demo on CEC goes from the bot's request through both sides' connection info
// and the pages' reports to the release of the room, and its final attach names the room.
func TestDemoCEC(t *testing.T) {
	for _, end := range []string{"transferred", "closed"} {
		t.Run(end, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			var out bytes.Buffer
			if err := Demo(ctx, &out, DemoOptions{Vendor: "cec", End: end}); err != nil {
				t.Fatalf("demo: %v\n%s", err, out.String())
			}
			s := out.String()
			room := regexp.MustCompile(`CEC: room (\S+) released true`).FindStringSubmatch(s)
			if room == nil {
				t.Fatalf("no CEC summary:\n%s", s)
			}
			for _, want := range []string{
				`interaction cobrowse_requested`,
				`PAGE start to the customer's page, room ` + regexp.QuoteMeta(room[1]) + `, wss://\S+, connectParam \.\.\.`,
				`PAGE view to agent agent-7, room ` + regexp.QuoteMeta(room[1]),
				`signal agent user_joined \(agent\) for interaction`,
				`CO-BROWSE activated`,
				`CoBrowseSessionId=` + regexp.QuoteMeta(room[1]),
				`CoBrowseEndReason=interaction_` + end,
			} {
				if !regexp.MustCompile(want).MatchString(s) {
					t.Errorf("output lacks %s:\n%s", want, s)
				}
			}
		})
	}
}
