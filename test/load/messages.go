package main

import (
	"encoding/json"
	"fmt"
	"time"
)

// The inbound messages the harness publishes, as the platform would (docs/nats-contract.md).

type sender struct {
	Role string `json:"role"`
	ID   string `json:"id,omitempty"`
	Name string `json:"name,omitempty"`
}

type chatJSON struct {
	ID            string `json:"id"`
	InteractionID string `json:"interactionId"`
	From          sender `json:"from"`
	Text          string `json:"text"`
	SentAt        string `json:"sentAt,omitempty"`
}

type eventJSON struct {
	ID            string `json:"id"`
	InteractionID string `json:"interactionId"`
	Type          string `json:"type"`
	AgentID       string `json:"agentId,omitempty"`
	At            string `json:"at"`
}

func stamp() string { return time.Now().UTC().Format("2006-01-02T15:04:05.000Z07:00") }

func chatSubject(iid string) string  { return prefix + ".chat." + iid + ".message" }
func eventSubject(iid string) string { return prefix + ".interaction." + iid + ".event" }

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only the harness's own structs are marshalled
	}
	return b
}

// texts are ordinary chat lines: none is a start message (a start message is nothing but
// {start:NNNNNNNNN} or <start:NNNNNNNNN> with optional whitespace).
var texts = []string{
	"Hello, I have a question about my last invoice.",
	"Thanks, Dana. Could you share your screen with me? Click 'Co-browse' and read me the number.",
	"Sure, one moment please.",
	"The page says {start: 123456789} but nothing happens",
	"I can see the form now; the second field is the one that fails.",
	"<start:12345678> was the old code, right?",
}

// ordinaryChat is chat line n of an interaction, from the customer or the agent in turn.
func ordinaryChat(iid string, n int) inbound {
	from := sender{Role: "customer", ID: "cust-" + iid}
	if n%2 == 1 {
		from = sender{Role: "agent", ID: "agent-" + iid, Name: "Agent " + iid}
	}
	return inbound{subject: chatSubject(iid), data: mustJSON(chatJSON{
		ID: fmt.Sprintf("chat-%s-%d", iid, n), InteractionID: iid, From: from, Text: texts[n%len(texts)], SentAt: stamp(),
	})}
}

// startChat is the customer's start message for a Genesys session token.
func startChat(iid, token string) chatJSON {
	return chatJSON{ID: "chat-" + iid + "-start", InteractionID: iid, From: sender{Role: "customer", ID: "cust-" + iid}, Text: "{start:" + token + "}", SentAt: stamp()}
}

func event(iid, typ, agentID string) eventJSON {
	return eventJSON{ID: "ev-" + iid + "-" + typ, InteractionID: iid, Type: typ, AgentID: agentID, At: stamp()}
}

// ingestMessages are the ingestion load: a created event per interaction (when created), then
// chat lines in rounds over the interactions, as conversations interleave.
func ingestMessages(interactions, chats int, created bool) []inbound {
	out := make([]inbound, 0, chats+interactions)
	iid := func(i int) string { return fmt.Sprintf("ing%07d", i) }
	if created {
		for i := range interactions {
			out = append(out, inbound{subject: eventSubject(iid(i)), data: mustJSON(event(iid(i), "created", "agent-"+iid(i)))})
		}
	}
	for n := range chats {
		out = append(out, ordinaryChat(iid(n%interactions), n/interactions))
	}
	return out
}
