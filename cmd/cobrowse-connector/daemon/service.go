package daemon

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/cobrowse-connector/cobrowse-connector/chat"
	"github.com/cobrowse-connector/cobrowse-connector/configs"
	"github.com/cobrowse-connector/cobrowse-connector/connector"
	"github.com/cobrowse-connector/cobrowse-connector/controller"
)

// The operator endpoints of the micro service (ServiceName), beside the cluster ones. Their
// subjects are serviceSubject + "." + these: cobrowse.status, cobrowse.sessions.list, ...
const (
	// EndpointStatus: this replica's view of itself. Every replica answers a request on it (no
	// queue group): `nats req --replies 0 cobrowse.status ''` gathers them all, and a plain
	// request gets the first answer.
	EndpointStatus = "status"
	// EndpointSessionsList, EndpointSessionsGet and EndpointSessionsStop read the state bucket
	// (and publish a stop signal): any replica answers for all, one replica of the queue group
	// takes each request.
	EndpointSessionsList = "sessions.list"
	EndpointSessionsGet  = "sessions.get"
	EndpointSessionsStop = "sessions.stop"
)

// StatusSubject is the subject every replica's status answers on; MemberStatusSubject the one
// only the instances of member answer on.
func StatusSubject() string { return serviceSubject + "." + EndpointStatus }

// MemberStatusSubject is the status subject of one member's replica (and of its standby
// instances, if any: each answers).
func MemberStatusSubject(member string) string { return StatusSubject() + "." + member }

// SessionsSubject is the subject of a sessions endpoint (EndpointSessionsList, ...).
func SessionsSubject(endpoint string) string { return serviceSubject + "." + endpoint }

// The bounds of the operator requests.
const (
	maxRequestBody   = 16 << 10 // a request body; every valid one is far smaller
	defaultListLimit = 100
	maxListLimit     = 1000
	maxIDLen         = 256 // interactionId, agent, after
	maxNoteLen       = 200 // reason, requestedBy (as OperatorOf cuts them)
	maxStopIDLen     = 64
)

// badRequest is a request the service refuses with code 400: its description says which field
// and why, never the field's value.
type badRequest struct{ msg string }

func (e *badRequest) Error() string { return e.msg }

func badf(format string, args ...any) error { return &badRequest{msg: fmt.Sprintf(format, args...)} }

// ListRequest is the body of sessions.list; every field is optional, an empty body lists all.
type ListRequest struct {
	Vendor string `json:"vendor,omitempty"` // genesys, zoom or cec
	Phase  string `json:"phase,omitempty"`  // starting, joined, active or stopping
	Agent  string `json:"agent,omitempty"`  // the interaction's current agent
	// Limit bounds the answer (default 100, at most 1000); After continues a listing after the
	// interaction an earlier answer named in next.
	Limit int    `json:"limit,omitempty"`
	After string `json:"after,omitempty"`
}

// GetRequest is the body of sessions.get.
type GetRequest struct {
	InteractionID string `json:"interactionId"`
}

// StopRequest is the body of sessions.stop. Reason and RequestedBy go into the stop's audit line;
// ID, when given, names the stop signal (a request sent again with the same id publishes a
// signal the stream and the daemon drop as a duplicate).
type StopRequest struct {
	InteractionID string `json:"interactionId"`
	Reason        string `json:"reason,omitempty"`
	RequestedBy   string `json:"requestedBy,omitempty"`
	ID            string `json:"id,omitempty"`
}

// decodeBody decodes a request body strictly into v: one JSON object, no unknown field, at most
// maxRequestBody bytes. An empty (or all-blank) body decodes to v's zero value when allowEmpty.
func decodeBody(b []byte, v any, allowEmpty bool) error {
	if len(b) > maxRequestBody {
		return badf("the body has more than %d bytes", maxRequestBody)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		if allowEmpty {
			return nil
		}
		return badf("the body is empty: a JSON object is required")
	}
	if !utf8.Valid(b) {
		return badf("the body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var syn *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &syn):
			return badf("the body is not JSON: %s at byte offset %d", syn.Error(), syn.Offset)
		case errors.Is(err, io.ErrUnexpectedEOF):
			return badf("the body is not JSON: it ends too early")
		case errors.As(err, &typ) && typ.Field != "":
			return badf("field %s: want %s", typ.Field, kindName(typ.Type.Kind()))
		case errors.As(err, &typ):
			return badf("the body must be a JSON object")
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return badf("unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
		}
		return badf("the body is not a JSON object: %s", err.Error())
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return badf("the body holds more than one JSON value")
	}
	return nil
}

// kindName says what a JSON value of a field of kind k must be.
func kindName(k reflect.Kind) string {
	switch k {
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int64:
		return "an integer"
	}
	return "a " + k.String()
}

// checkID refuses what cannot be a NATS subject token (the contract's rule for interaction and
// agent ids): empty, over maxIDLen bytes, or holding '.', a wildcard, whitespace or a control
// character.
func checkID(field, v string) error {
	if v == "" {
		return badf("field %s: required", field)
	}
	if len(v) > maxIDLen {
		return badf("field %s: longer than %d bytes", field, maxIDLen)
	}
	for i, r := range v {
		if r == '.' || r == '*' || r == '>' || unicode.IsSpace(r) || unicode.IsControl(r) || r == utf8.RuneError {
			return badf("field %s: not a NATS subject token (a '.', wildcard, whitespace or control character at byte offset %d)", field, i)
		}
	}
	return nil
}

// checkNote refuses a free text over maxNoteLen characters or with control characters (an
// audit line stays one line).
func checkNote(field, v string) error {
	if utf8.RuneCountInString(v) > maxNoteLen {
		return badf("field %s: longer than %d characters", field, maxNoteLen)
	}
	for i, r := range v {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return badf("field %s: a control character at byte offset %d", field, i)
		}
	}
	return nil
}

var (
	knownVendors = []string{string(connector.Genesys), string(connector.Zoom), string(connector.CEC)}
	knownPhases  = phaseNames()
)

// phaseNames are the phases of a live session, as the state and the metrics name them.
func phaseNames() []string {
	out := make([]string, len(controller.LivePhases))
	for i, p := range controller.LivePhases {
		out[i] = string(p)
	}
	return out
}

// decodeListRequest reads a sessions.list body.
func decodeListRequest(b []byte) (ListRequest, error) {
	var r ListRequest
	if err := decodeBody(b, &r, true); err != nil {
		return ListRequest{}, err
	}
	if r.Vendor != "" && !slices.Contains(knownVendors, r.Vendor) {
		return ListRequest{}, badf("field vendor: not one of %s", strings.Join(knownVendors, ", "))
	}
	if r.Phase != "" && !slices.Contains(knownPhases, r.Phase) {
		return ListRequest{}, badf("field phase: not one of %s", strings.Join(knownPhases, ", "))
	}
	if r.Agent != "" {
		if err := checkID("agent", r.Agent); err != nil {
			return ListRequest{}, err
		}
	}
	if r.After != "" {
		if err := checkID("after", r.After); err != nil {
			return ListRequest{}, err
		}
	}
	switch {
	case r.Limit < 0 || r.Limit > maxListLimit:
		return ListRequest{}, badf("field limit: want 1 to %d (0 or absent: %d)", maxListLimit, defaultListLimit)
	case r.Limit == 0:
		r.Limit = defaultListLimit
	}
	return r, nil
}

// decodeGetRequest reads a sessions.get body.
func decodeGetRequest(b []byte) (GetRequest, error) {
	var r GetRequest
	if err := decodeBody(b, &r, false); err != nil {
		return GetRequest{}, err
	}
	if err := checkID("interactionId", r.InteractionID); err != nil {
		return GetRequest{}, err
	}
	return r, nil
}

// decodeStopRequest reads a sessions.stop body.
func decodeStopRequest(b []byte) (StopRequest, error) {
	var r StopRequest
	if err := decodeBody(b, &r, false); err != nil {
		return StopRequest{}, err
	}
	if err := checkID("interactionId", r.InteractionID); err != nil {
		return StopRequest{}, err
	}
	if err := checkNote("reason", r.Reason); err != nil {
		return StopRequest{}, err
	}
	if err := checkNote("requestedBy", r.RequestedBy); err != nil {
		return StopRequest{}, err
	}
	if r.ID != "" {
		if len(r.ID) > maxStopIDLen {
			return StopRequest{}, badf("field id: longer than %d bytes", maxStopIDLen)
		}
		for i := 0; i < len(r.ID); i++ {
			if ch := r.ID[i]; !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '_') {
				return StopRequest{}, badf("field id: only letters, digits, '-' and '_' (byte offset %d)", i)
			}
		}
	}
	return r, nil
}

// SessionSummary is a live session as the operator endpoints show it: credentials masked, the
// vendor's own data left out.
type SessionSummary struct {
	InteractionID string              `json:"interactionId"`
	Vendor        connector.Vendor    `json:"vendor"`
	Phase         controller.Phase    `json:"phase"`
	AgentID       string              `json:"agentId,omitempty"`
	SessionID     string              `json:"sessionId,omitempty"`
	Token         string              `json:"token,omitempty"` // masked (connector.MaskToken)
	JoinedAt      time.Time           `json:"joinedAt,omitzero"`
	ActivatedAt   time.Time           `json:"activatedAt,omitzero"`
	StopReason    connector.EndReason `json:"stopReason,omitempty"`
	// Partition is the interaction's partition of the consumer group: the member that owns it
	// acts for it (see cobrowse.cluster.status).
	Partition int `json:"partition"`
}

// ListAnswer is the answer of sessions.list. Truncated says more sessions matched than Limit;
// Next is then the After of the next page.
type ListAnswer struct {
	Sessions  []SessionSummary `json:"sessions"`
	Truncated bool             `json:"truncated"`
	Next      string           `json:"next,omitempty"`
}

// StateSummary is one interaction as sessions.get shows it.
type StateSummary struct {
	InteractionID string              `json:"interactionId"`
	Vendor        connector.Vendor    `json:"vendor"`
	AgentID       string              `json:"agentId,omitempty"`
	Closed        bool                `json:"closed"`
	Seq           uint64              `json:"seq"`
	Sessions      int                 `json:"sessions"`
	Ended         int                 `json:"ended"`
	SessionID     string              `json:"sessionId,omitempty"`
	EndReason     connector.EndReason `json:"endReason,omitempty"`
	LastActivity  time.Time           `json:"lastActivity,omitzero"`
	PendingStops  int                 `json:"pendingStops"`
	Partition     int                 `json:"partition"`
	Revision      uint64              `json:"revision"`
	Live          *SessionSummary     `json:"live"`
}

// StopAnswer is the answer of sessions.stop: the stop signal is stored in the inbound stream
// (Stream, Seq; Duplicate when it was there already); the session ends as operator_stop when the
// replica that owns the interaction takes it.
type StopAnswer struct {
	InteractionID string `json:"interactionId"`
	SessionID     string `json:"sessionId,omitempty"`
	Signal        string `json:"signal"`
	Subject       string `json:"subject"`
	Stream        string `json:"stream"`
	Seq           uint64 `json:"seq"`
	Duplicate     bool   `json:"duplicate"`
}

// Status is this replica's view of itself (the status endpoint).
type Status struct {
	Service  string `json:"service"`
	Version  string `json:"version"`
	Build    string `json:"build"`
	Member   string `json:"member"`
	Instance string `json:"instance"` // the micro service instance's id
	Started  string `json:"started"`
	NATS     struct {
		Status string `json:"status"` // CONNECTED, RECONNECTING, ...
		URL    string `json:"url,omitempty"`
	} `json:"nats"`
	Consumer struct {
		Group      string `json:"group"`
		Partitions []int  `json:"partitions"` // the partitions this instance acts for now
		Of         int    `json:"of"`         // the group's partition count
	} `json:"consumer"`
	Sessions      []controller.SessionCount `json:"sessions"` // the live sessions this replica acts for
	LiveSessions  int                       `json:"liveSessions"`
	Vendors       []VendorStatus            `json:"vendors"`
	DefaultVendor string                    `json:"defaultVendor"`
	Retention     string                    `json:"retention"` // the state bucket's retention of closed interactions; "0s": kept
}

// VendorStatus is an enabled vendor and what is known of its health without calling it: its
// circuit breakers' states, by node.
type VendorStatus struct {
	Vendor   string                            `json:"vendor"`
	Breakers map[string]connector.BreakerState `json:"breakers"`
	Healthy  bool                              `json:"healthy"` // no breaker open
}

// operatorService serves the operator endpoints.
type operatorService struct {
	nc        *nats.Conn
	js        jetstream.JetStream
	store     *controller.KVStore
	ctrl      *controller.Controller
	consumer  *chat.Consumer
	vendors   *vendors
	prefix    string
	member    string
	instance  string // the micro service instance's id
	group     string
	parts     int
	defVendor connector.Vendor
	pubWait   time.Duration
	started   time.Time
	log       *slog.Logger
}

// addOperatorEndpoints registers the operator endpoints on the daemon's micro service.
func addOperatorEndpoints(svc micro.Service, o *operatorService) error {
	o.instance = svc.Info().ID
	type ep struct {
		name, subject string
		h             micro.HandlerFunc
		noQueue       bool
	}
	eps := []ep{
		{name: EndpointStatus, subject: StatusSubject(), h: o.status, noQueue: true},
		{name: "status_member", subject: MemberStatusSubject(o.member), h: o.status, noQueue: true},
		{name: "sessions_list", subject: SessionsSubject(EndpointSessionsList), h: o.list},
		{name: "sessions_get", subject: SessionsSubject(EndpointSessionsGet), h: o.get},
		{name: "sessions_stop", subject: SessionsSubject(EndpointSessionsStop), h: o.stop},
	}
	for _, e := range eps {
		opts := []micro.EndpointOpt{micro.WithEndpointSubject(e.subject), micro.WithEndpointMetadata(map[string]string{"member": o.member})}
		if e.noQueue {
			opts = append(opts, micro.WithEndpointQueueGroupDisabled())
		}
		if err := svc.AddEndpoint(e.name, e.h, opts...); err != nil {
			return fmt.Errorf("micro service: endpoint %s: %w", e.name, err)
		}
	}
	// The server knows the endpoints once the daemon says it is ready. A failure (NATS away)
	// changes nothing: the subscriptions are made again on the reconnect.
	_ = o.nc.FlushTimeout(5 * time.Second)
	return nil
}

// fail answers a request with a micro error: 400 for a bad request, else code.
func fail(req micro.Request, code string, err error) {
	if _, ok := errors.AsType[*badRequest](err); ok {
		code = "400"
	}
	_ = req.Error(code, err.Error(), nil)
}

func (o *operatorService) status(req micro.Request) {
	var st Status
	st.Service, st.Version, st.Build = ServiceName, serviceVersion(BuildVersion()), BuildVersion()
	st.Member, st.Started = o.member, o.started.UTC().Format(time.RFC3339)
	st.NATS.Status = o.nc.Status().String()
	st.NATS.URL = o.nc.ConnectedUrlRedacted()
	st.Consumer.Group, st.Consumer.Partitions, st.Consumer.Of = o.group, o.consumer.Partitions(), o.parts
	st.Sessions = o.ctrl.LiveSessions()
	for _, c := range st.Sessions {
		st.LiveSessions += c.Count
	}
	st.DefaultVendor = string(o.defVendor)
	byName := slices.SortedFunc(slices.Values(o.vendors.breakers), func(a, b vendorBreakers) int { return strings.Compare(a.vendor, b.vendor) })
	for _, v := range byName {
		vs := VendorStatus{Vendor: v.vendor, Breakers: v.breakers.States(), Healthy: true}
		for _, s := range vs.Breakers {
			if s == connector.BreakerOpen {
				vs.Healthy = false
			}
		}
		st.Vendors = append(st.Vendors, vs)
	}
	st.Retention = o.store.Retention().String()
	st.Instance = o.instance
	_ = req.RespondJSON(st)
}

// summary is a live state as the endpoints show it.
func (o *operatorService) summary(st controller.State) *SessionSummary {
	l := st.Live
	if l == nil {
		return nil
	}
	return &SessionSummary{
		InteractionID: st.InteractionID,
		Vendor:        o.vendorOf(st),
		Phase:         l.Phase,
		AgentID:       st.AgentID,
		SessionID:     l.Handle.SessionID,
		Token:         connector.MaskToken(l.Handle.Token),
		JoinedAt:      l.JoinedAt,
		ActivatedAt:   l.ActivatedAt,
		StopReason:    l.StopReason,
		Partition:     chat.Partition(st.InteractionID, o.parts),
	}
}

// vendorOf is the vendor of the interaction's live session, else of the interaction.
func (o *operatorService) vendorOf(st controller.State) connector.Vendor {
	if st.Live != nil && st.Live.Handle.Vendor != "" {
		return st.Live.Handle.Vendor
	}
	if st.Vendor != "" {
		return st.Vendor
	}
	return o.defVendor
}

func (o *operatorService) list(req micro.Request) {
	r, err := decodeListRequest(req.Data())
	if err != nil {
		fail(req, "400", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ans := ListAnswer{Sessions: []SessionSummary{}}
	err = o.store.EachLive(ctx, r.After, func(s controller.Saved) bool {
		sum := o.summary(s.State)
		if (r.Vendor != "" && string(sum.Vendor) != r.Vendor) || (r.Phase != "" && string(sum.Phase) != r.Phase) ||
			(r.Agent != "" && sum.AgentID != r.Agent) {
			return true
		}
		if len(ans.Sessions) == r.Limit {
			ans.Truncated = true
			ans.Next = ans.Sessions[len(ans.Sessions)-1].InteractionID
			return false
		}
		ans.Sessions = append(ans.Sessions, *sum)
		return true
	})
	if err != nil {
		fail(req, "503", fmt.Errorf("reading the state bucket: %w", err))
		return
	}
	_ = req.RespondJSON(ans)
}

func (o *operatorService) get(req micro.Request) {
	r, err := decodeGetRequest(req.Data())
	if err != nil {
		fail(req, "400", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, rev, err := o.store.Load(ctx, r.InteractionID)
	if err != nil {
		fail(req, "503", fmt.Errorf("reading the state bucket: %w", err))
		return
	}
	if rev == 0 {
		fail(req, "404", fmt.Errorf("interaction %s: no state in the bucket (unknown, or purged after its retention)", r.InteractionID))
		return
	}
	_ = req.RespondJSON(StateSummary{
		InteractionID: r.InteractionID,
		Vendor:        o.vendorOf(st),
		AgentID:       st.AgentID,
		Closed:        st.Closed,
		Seq:           st.Seq,
		Sessions:      st.Sessions,
		Ended:         st.Ended,
		SessionID:     st.SessionID,
		EndReason:     st.EndReason,
		LastActivity:  st.LastActivity,
		PendingStops:  len(st.PendingStops),
		Partition:     chat.Partition(r.InteractionID, o.parts),
		Revision:      rev,
		Live:          o.summary(st),
	})
}

// stop publishes an operator's stop signal for the interaction's live session and answers once
// the inbound stream holds it. The audit line is the controller's, written where the stop is
// done; the signal carries who asked, why, and through which replica (controller.Operator).
func (o *operatorService) stop(req micro.Request) {
	r, err := decodeStopRequest(req.Data())
	if err != nil {
		fail(req, "400", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second+o.pubWait)
	defer cancel()
	st, rev, err := o.store.Load(ctx, r.InteractionID)
	if err != nil {
		fail(req, "503", fmt.Errorf("reading the state bucket: %w", err))
		return
	}
	if rev == 0 {
		fail(req, "404", fmt.Errorf("interaction %s: no state in the bucket (unknown, or purged after its retention)", r.InteractionID))
		return
	}
	if st.Live == nil {
		fail(req, "409", fmt.Errorf("interaction %s has no live session: nothing to stop", r.InteractionID))
		return
	}
	id := r.ID
	if id == "" {
		id = "op-" + rand.Text()
	}
	raw, _ := json.Marshal(controller.Operator{RequestedBy: r.RequestedBy, Reason: r.Reason, Via: o.member})
	sig, _ := json.Marshal(chat.Signal{ID: id, InteractionID: r.InteractionID, Source: chat.SourceOperator, Type: chat.SignalStop,
		At: time.Now().UTC(), Raw: raw})
	subject := chat.SignalSubject(o.prefix, r.InteractionID, chat.SourceOperator)
	msg := nats.NewMsg(subject)
	msg.Data = sig
	msg.Header.Set(jetstream.MsgIDHeader, OperatorStopMsgID(r.InteractionID, id))
	pctx, pcancel := context.WithTimeout(ctx, o.pubWait)
	defer pcancel()
	ack, err := o.js.PublishMsg(pctx, msg)
	if err != nil {
		fail(req, "503", fmt.Errorf("publishing the stop signal: %w", err))
		return
	}
	o.log.Debug("operator stop signal published", "interaction", r.InteractionID, "signal", id, "session_id", st.Live.Handle.SessionID,
		"duplicate", ack.Duplicate)
	_ = req.RespondJSON(StopAnswer{InteractionID: r.InteractionID, SessionID: st.Live.Handle.SessionID, Signal: id, Subject: subject,
		Stream: ack.Stream, Seq: ack.Sequence, Duplicate: ack.Duplicate})
}

// OperatorStopMsgID is the Nats-Msg-Id of an operator's stop signal published by sessions.stop.
func OperatorStopMsgID(interactionID, signalID string) string {
	return "signal.operator." + interactionID + "." + signalID
}

// newOperatorService gathers what the operator endpoints read.
func newOperatorService(cfg configs.Config, nc *nats.Conn, js jetstream.JetStream, store *controller.KVStore, ctrl *controller.Controller,
	consumer *chat.Consumer, vs *vendors, log *slog.Logger) *operatorService {
	return &operatorService{nc: nc, js: js, store: store, ctrl: ctrl, consumer: consumer, vendors: vs, prefix: cfg.NATS.Prefix,
		member: cfg.Cluster.Member, group: cfg.Cluster.Group, parts: cfg.Cluster.Partitions, defVendor: connector.Vendor(cfg.DefaultVendor()),
		pubWait: cfg.NATS.Outbound.PublishTimeout.D(), started: time.Now(), log: log.With("component", "service")}
}
