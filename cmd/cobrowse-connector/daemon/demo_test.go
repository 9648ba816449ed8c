package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
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

// TestDemoVerbose: --verbose prints each message that crosses NATS as its subject and its raw JSON
// payload, inbound and outbound, in the order NATS delivered them: the start message before the
// joined event, the attaches by seq, the final attach after the interaction's end.
func TestDemoVerbose(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := Demo(ctx, &out, DemoOptions{Verbose: true}); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	s := out.String()
	raw := regexp.MustCompile(`(?m)^\s*\d+\.\d\ds  (cc\.\S+) (\{.*\})$`)
	var subjects []string
	var attachSeqs []int
	startAt, joinedAt, endAt := -1, -1, -1
	for _, m := range raw.FindAllStringSubmatch(s, -1) {
		subject, payload := m[1], m[2]
		var v map[string]any
		if err := json.Unmarshal([]byte(payload), &v); err != nil {
			t.Fatalf("%s: the payload is not JSON: %v: %s", subject, err, payload)
		}
		switch {
		case subject == "cc.chat."+demoInteraction+".message" && regexp.MustCompile(`^\{start:\d{9}\}$`).MatchString(fmt.Sprint(v["text"])):
			startAt = len(subjects)
		case subject == "cc.cobrowse."+demoInteraction+".joined":
			joinedAt = len(subjects)
		case subject == "cc.interaction."+demoInteraction+".event" && v["type"] == "transferred":
			endAt = len(subjects)
		case subject == "cc.interaction."+demoInteraction+".attach":
			attachSeqs = append(attachSeqs, int(v["seq"].(float64)))
			if len(attachSeqs) == 3 && endAt < 0 {
				t.Errorf("the final attach came before the interaction's end:\n%s", s)
			}
		}
		subjects = append(subjects, subject)
	}
	if startAt < 0 || joinedAt < startAt {
		t.Errorf("start message at %d, joined event at %d: want both, the start first:\n%s", startAt, joinedAt, s)
	}
	if !slices.Equal(attachSeqs, []int{1, 2, 3}) {
		t.Errorf("attach seqs %v, want 1 2 3:\n%s", attachSeqs, s)
	}
	for _, want := range []string{"cc.agent.agent-7.cobrowse", "cc.cobrowse." + demoInteraction + ".activated", "cc.cobrowse." + demoInteraction + ".deactivated"} {
		if !slices.Contains(subjects, want) {
			t.Errorf("no %s in %v", want, subjects)
		}
	}
	// Verbose replaces the descriptions; the demo's own notes and the summary stay.
	if strings.Contains(s, "ATTACH #") || !strings.Contains(s, "Summary for interaction") || !strings.Contains(s, "opens the agent view") {
		t.Errorf("verbose output:\n%s", s)
	}
}
