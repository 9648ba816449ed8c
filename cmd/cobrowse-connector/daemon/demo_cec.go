package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/attach"
	"github.com/cobrowse-connector/cobrowse-connector/chat"
	"github.com/cobrowse-connector/cobrowse-connector/configs"
	"github.com/cobrowse-connector/cobrowse-connector/connector"
	"github.com/cobrowse-connector/cobrowse-connector/connector/cec/cectest"
)

// demoCEC is the demo on Huawei CEC: the built-in CEC (cectest) plays API Fabric and the web
// adapter. The bot asks for co-browse; the daemon gets the connection information of both sides
// and hands each page its own; the pages open the room and report what the CEC SDK tells them; at
// the end the daemon releases the room.
func demoCEC(ctx context.Context, w io.Writer, opts DemoOptions, end chat.EventType, log *slog.Logger) error {
	s := cectest.New(cectest.Options{})
	defer s.Close()
	o := s.Options()

	cfg := demoConfig()
	cfg.CEC.Enabled = true
	cfg.CEC.Domain, cfg.CEC.AppKey, cfg.CEC.AppSecret, cfg.CEC.TenantSpaceID = s.URL(), o.AppKey, configs.Secret(o.AppSecret), o.TenantSpaceID
	cfg.CEC.ReleaseURL = s.ReleaseURL()
	d, err := startDemoDaemon(ctx, cfg, log)
	if err != nil {
		return err
	}
	p := newDemoPrinter(w, opts)
	fmt.Fprintf(w, "cobrowse-connector demo on Huawei CEC: embedded NATS at %s, built-in CEC (API Fabric and the web adapter) at %s\n\n", d.natsURL, s.URL())
	return d.finish(p.playCEC(ctx, d.natsURL, s, end))
}

func (p *demoPrinter) playCEC(ctx context.Context, natsURL string, s *cectest.Server, end chat.EventType) error {
	ctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	sc, release, err := p.script(ctx, natsURL)
	if err != nil {
		return err
	}
	defer release()
	say, event, report := sc.say, sc.event, sc.report
	chatSubj := chat.ChatSubject("cc", demoInteraction)
	attachSubj := attach.UpdateSubject("cc", demoInteraction)
	agentSubj := attach.AgentSubject("cc", demoAgent)
	customerSubj := attach.CustomerSubject("cc", demoInteraction)

	if err := event(chat.Event{Type: chat.EventCreated, AgentID: demoAgent, Vendor: string(connector.CEC)}); err != nil {
		return err
	}
	p.pause(ctx)
	if err := say(chat.RoleCustomer, "customer-42", "Hi, I am stuck on the loan application form."); err != nil {
		return err
	}
	if err := say(chat.RoleBot, "assistant", "An agent can look at the form with you. Starting co-browse..."); err != nil {
		return err
	}
	if err := p.await(ctx, chatSubj, 2); err != nil {
		return err
	}
	p.pause(ctx)
	if err := event(chat.Event{Type: chat.EventCobrowseRequested, RequestedBy: &chat.Sender{Role: chat.RoleBot, ID: "assistant"}}); err != nil {
		return err
	}
	if err := p.await(ctx, customerSubj, 1); err != nil {
		return err
	}
	start := p.lastPage
	if err := p.await(ctx, agentSubj, 1); err != nil {
		return err
	}
	view := p.lastPage
	p.pause(ctx)
	p.note("the customer's page opens room %s with its recorder connection info", start.RoomID)
	if err := s.Connect(cectest.RoleRecorder, start.RoomID, start.WSSURL, start.ConnectParam); err != nil {
		return fmt.Errorf("demo: the customer's page: %w", err)
	}
	p.note("agent %s's page opens the room with its replayer connection info, and reports it", demoAgent)
	if err := s.Connect(cectest.RoleReplayer, view.RoomID, view.WSSURL, view.ConnectParam); err != nil {
		return fmt.Errorf("demo: the agent's page: %w", err)
	}
	if err := report(chat.SourceAgent, chat.SignalUserJoined, chat.RoleAgent); err != nil {
		return err
	}
	if err := p.await(ctx, attachSubj, 2); err != nil {
		return err
	}
	if err := sc.agentHelpsThenEnds(3, end); err != nil {
		return err
	}
	if err := p.await(ctx, attachSubj, 3); err != nil {
		return err
	}
	// The end page messages follow the final attach on their own stream.
	if err := p.await(ctx, customerSubj, 2); err != nil {
		return err
	}
	room, _ := s.Room(start.RoomID)
	d := p.last.Data
	fmt.Fprintf(p.w, "\nSummary for interaction %s:\n", demoInteraction)
	for _, kv := range dataLines(d) {
		fmt.Fprintf(p.w, "  %s\n", kv)
	}
	fmt.Fprintf(p.w, "  CEC: room %s released %v (connection info handed out %d times)\n", room.ID, room.Released, len(room.Issued))
	if d.Associated != "No" || d.SessionID != start.RoomID || d.StartTime == "" || d.EndReason != "interaction_"+string(end) || !room.Released {
		return errors.New("demo: the final attached data is incomplete")
	}
	return nil
}
