// Package contract loads the NATS contract as tools read it, docs/asyncapi.yaml and the JSON
// Schemas it refers to in docs/schemas, and checks a message against it by its subject: the
// payload against the schema of the subject's channel, the subject's tokens against the payload's
// fields they stand for, and the Nats-Msg-Id against the message's forms (x-msg-id). The tests use
// it on the examples of docs/nats-contract.md, on what the e2e tests publish and on everything the
// real daemon publishes in them.
//
// It imports nothing of the daemon, so that any package's tests may use it.
package contract

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"
)

// SchemaFormat is the schemaFormat of every payload in docs/asyncapi.yaml.
const SchemaFormat = "application/schema+json;version=draft-2020-12"

// Contract is the compiled contract for one subject prefix.
type Contract struct {
	// Root is the repository's root directory.
	Root     string
	prefix   string
	Channels []*Channel
	// Files are the schema files the messages' payloads name, relative to docs/ (schemas/x.json).
	Files []string
}

// Channel is one channel of docs/asyncapi.yaml.
type Channel struct {
	Name    string
	Address string   // as written, {prefix} first
	tokens  []string // the address's tokens after {prefix}: literals, or {param}
	params  map[string]param
	// Actions are the operations' actions on the channel: receive, send or both.
	Actions  []string
	Messages []*Message
}

type param struct {
	enum  []string
	field string // the payload's top-level field the token equals (its location), or ""
}

// Message is one message a channel carries.
type Message struct {
	Name   string
	File   string   // its payload's schema, relative to docs/
	MsgIDs []string // its x-msg-id forms; none: any msg id, or none
	schema *jsonschema.Schema
}

// Root finds the repository's root: the nearest directory, from the working directory up, with a
// go.mod (tests run in their package's directory).
func Root() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("contract: no go.mod above the working directory")
		}
		dir = parent
	}
}

// Load reads docs/asyncapi.yaml, compiles every schema its messages name and checks that every
// reference in it resolves: channels, parameters, messages, operations. prefix is the subject
// prefix the checked subjects use (nats.prefix; "" means "cc").
func Load(prefix string) (*Contract, error) {
	if prefix == "" {
		prefix = "cc"
	}
	root, err := Root()
	if err != nil {
		return nil, err
	}
	docPath := filepath.Join(root, "docs", "asyncapi.yaml")
	raw, err := os.ReadFile(docPath)
	if err != nil {
		return nil, err
	}
	var doc map[string]any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("docs/asyncapi.yaml: %w", err)
	}
	l := &loader{doc: doc, docsDir: filepath.Dir(docPath), compiler: jsonschema.NewCompiler(), schemas: map[string]*jsonschema.Schema{}}
	c := &Contract{Root: root, prefix: prefix}
	if v, _ := doc["asyncapi"].(string); v != "3.0.0" {
		return nil, fmt.Errorf("docs/asyncapi.yaml: asyncapi %q, want 3.0.0", v)
	}
	channels, err := l.mapAt("channels", doc["channels"])
	if err != nil {
		return nil, err
	}
	byName := map[string]*Channel{}
	for _, name := range sortedKeys(channels) {
		ch, err := l.channel(name, channels[name])
		if err != nil {
			return nil, fmt.Errorf("docs/asyncapi.yaml: channel %s: %w", name, err)
		}
		c.Channels = append(c.Channels, ch)
		byName[name] = ch
	}
	ops, err := l.mapAt("operations", doc["operations"])
	if err != nil {
		return nil, err
	}
	for _, name := range sortedKeys(ops) {
		if err := l.operation(name, ops[name], byName); err != nil {
			return nil, fmt.Errorf("docs/asyncapi.yaml: operation %s: %w", name, err)
		}
	}
	for _, ch := range c.Channels {
		if len(ch.Actions) == 0 {
			return nil, fmt.Errorf("docs/asyncapi.yaml: channel %s: no operation sends or receives it", ch.Name)
		}
	}
	c.Files = sortedKeys(l.schemas)
	return c, nil
}

type loader struct {
	doc      map[string]any
	docsDir  string
	compiler *jsonschema.Compiler
	schemas  map[string]*jsonschema.Schema // by file, relative to docs/
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func (l *loader) mapAt(what string, v any) (map[string]any, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("docs/asyncapi.yaml: %s is not a mapping", what)
	}
	return m, nil
}

// deref follows local $refs ("#/a/b") until it reaches an object that is not one, and returns
// that object and the first $ref ("" for an inline object).
func (l *loader) deref(v any) (map[string]any, string, error) {
	ptr := ""
	for range 10 {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, ptr, fmt.Errorf("%v is not a mapping", v)
		}
		ref, ok := m["$ref"].(string)
		if !ok {
			return m, ptr, nil
		}
		if ptr == "" {
			ptr = ref
		}
		if v = l.pointer(ref); v == nil {
			return nil, ptr, fmt.Errorf("$ref %s resolves to nothing", ref)
		}
	}
	return nil, ptr, errors.New("$ref chain too long")
}

// pointer resolves a local JSON pointer in the document; nil when it names nothing.
func (l *loader) pointer(ref string) any {
	path, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return nil
	}
	var v any = l.doc
	for _, part := range strings.Split(path, "/") {
		part = strings.ReplaceAll(strings.ReplaceAll(part, "~1", "/"), "~0", "~")
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		if v, ok = m[part]; !ok {
			return nil
		}
	}
	return v
}

var placeholder = regexp.MustCompile(`\{([^{}]*)\}`)

func (l *loader) channel(name string, v any) (*Channel, error) {
	m, _, err := l.deref(v)
	if err != nil {
		return nil, err
	}
	ch := &Channel{Name: name, params: map[string]param{}}
	ch.Address, _ = m["address"].(string)
	rest, ok := strings.CutPrefix(ch.Address, "{prefix}.")
	if !ok {
		return nil, fmt.Errorf(`address %q does not start with "{prefix}."`, ch.Address)
	}
	ch.tokens = strings.Split(rest, ".")
	inAddress := map[string]bool{"prefix": true}
	for _, t := range ch.tokens {
		if sub := placeholder.FindStringSubmatch(t); sub != nil {
			if sub[0] != t {
				return nil, fmt.Errorf("address %q: a parameter must be a whole token", ch.Address)
			}
			inAddress[sub[1]] = true
		} else if t == "" || strings.ContainsAny(t, "*>{} ") {
			return nil, fmt.Errorf("address %q: token %q is not a literal", ch.Address, t)
		}
	}
	params, _ := m["parameters"].(map[string]any)
	for _, p := range sortedKeys(params) {
		if !inAddress[p] {
			return nil, fmt.Errorf("parameter %s is not in the address %q", p, ch.Address)
		}
		pm, _, err := l.deref(params[p])
		if err != nil {
			return nil, fmt.Errorf("parameter %s: %w", p, err)
		}
		var pp param
		if enum, ok := pm["enum"].([]any); ok {
			for _, e := range enum {
				s, _ := e.(string)
				pp.enum = append(pp.enum, s)
			}
		}
		if loc, ok := pm["location"].(string); ok {
			field, ok := strings.CutPrefix(loc, "$message.payload#/")
			if !ok || field == "" || strings.Contains(field, "/") {
				return nil, fmt.Errorf("parameter %s: location %q is not a top-level payload field", p, loc)
			}
			pp.field = field
		}
		ch.params[p] = pp
	}
	for p := range inAddress {
		if _, ok := ch.params[p]; !ok {
			return nil, fmt.Errorf("address %q: parameter %s is not described", ch.Address, p)
		}
	}
	msgs, _ := m["messages"].(map[string]any)
	if len(msgs) == 0 {
		return nil, errors.New("no messages")
	}
	for _, mn := range sortedKeys(msgs) {
		msg, err := l.message(mn, msgs[mn])
		if err != nil {
			return nil, fmt.Errorf("message %s: %w", mn, err)
		}
		ch.Messages = append(ch.Messages, msg)
	}
	return ch, nil
}

func (l *loader) message(name string, v any) (*Message, error) {
	m, _, err := l.deref(v)
	if err != nil {
		return nil, err
	}
	payload, _ := m["payload"].(map[string]any)
	if f, _ := payload["schemaFormat"].(string); f != SchemaFormat {
		return nil, fmt.Errorf("payload schemaFormat %q, want %q", f, SchemaFormat)
	}
	schema, _ := payload["schema"].(map[string]any)
	file, _ := schema["$ref"].(string)
	file = strings.TrimPrefix(file, "./")
	if !strings.HasPrefix(file, "schemas/") || !strings.HasSuffix(file, ".json") || strings.Contains(file, "#") {
		return nil, fmt.Errorf("payload schema $ref %q is not a file under schemas/", file)
	}
	if h, ok := m["headers"]; ok {
		if _, _, err := l.deref(h); err != nil {
			return nil, fmt.Errorf("headers: %w", err)
		}
	}
	msg := &Message{Name: name, File: file}
	for _, id := range asList(m["x-msg-id"]) {
		s, ok := id.(string)
		if !ok || s == "" {
			return nil, fmt.Errorf("x-msg-id %v is not a string", id)
		}
		msg.MsgIDs = append(msg.MsgIDs, s)
	}
	if msg.schema = l.schemas[file]; msg.schema == nil {
		path := filepath.Join(l.docsDir, filepath.FromSlash(file))
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("payload schema: %w", err)
		}
		if msg.schema, err = l.compiler.Compile(path); err != nil {
			return nil, fmt.Errorf("payload schema docs/%s does not compile: %w", file, err)
		}
		l.schemas[file] = msg.schema
	}
	return msg, nil
}

func asList(v any) []any {
	if l, ok := v.([]any); ok {
		return l
	}
	return nil
}

func (l *loader) operation(name string, v any, channels map[string]*Channel) error {
	m, _, err := l.deref(v)
	if err != nil {
		return err
	}
	action, _ := m["action"].(string)
	if action != "send" && action != "receive" {
		return fmt.Errorf("action %q is neither send nor receive", action)
	}
	chRef, _ := m["channel"].(map[string]any)
	_, ptr, err := l.deref(chRef)
	if err != nil {
		return fmt.Errorf("channel: %w", err)
	}
	chName, ok := strings.CutPrefix(ptr, "#/channels/")
	ch := channels[chName]
	if !ok || ch == nil {
		return fmt.Errorf("channel $ref %q is not a channel", ptr)
	}
	msgs := asList(m["messages"])
	if len(msgs) == 0 {
		return errors.New("no messages")
	}
	for _, mv := range msgs {
		_, ptr, err := l.deref(mv)
		if err != nil {
			return fmt.Errorf("message: %w", err)
		}
		if !strings.HasPrefix(ptr, "#/channels/"+chName+"/messages/") {
			return fmt.Errorf("message $ref %q is not a message of its channel %s", ptr, chName)
		}
	}
	if !slices.Contains(ch.Actions, action) {
		ch.Actions = append(ch.Actions, action)
	}
	return nil
}

// Match finds the channel of subject and the values of its parameters; nil when no channel's
// address matches.
func (c *Contract) Match(subject string) (*Channel, map[string]string) {
	rest, ok := strings.CutPrefix(subject, c.prefix+".")
	if !ok {
		return nil, nil
	}
	tokens := strings.Split(rest, ".")
	for _, ch := range c.Channels {
		if values, ok := ch.match(tokens); ok {
			values["prefix"] = c.prefix
			return ch, values
		}
	}
	return nil, nil
}

func (ch *Channel) match(tokens []string) (map[string]string, bool) {
	if len(tokens) != len(ch.tokens) {
		return nil, false
	}
	values := map[string]string{}
	for i, t := range ch.tokens {
		if sub := placeholder.FindStringSubmatch(t); sub != nil {
			p := ch.params[sub[1]]
			if tokens[i] == "" || (p.enum != nil && !slices.Contains(p.enum, tokens[i])) {
				return nil, false
			}
			values[sub[1]] = tokens[i]
		} else if tokens[i] != t {
			return nil, false
		}
	}
	return values, true
}

// Check checks one message published on subject with the Nats-Msg-Id msgID ("" for none): the
// subject must match a channel, and the message must be one of the channel's: its payload valid
// against the message's schema, each parameter with a location equal to its payload field, and
// the msg id of one of the message's forms (when it has any). The error names the subject, and
// for each of the channel's messages the schema file and what is wrong.
func (c *Contract) Check(subject, msgID string, payload []byte) error {
	ch, values := c.Match(subject)
	if ch == nil {
		return fmt.Errorf("subject %s: no channel of docs/asyncapi.yaml matches it (prefix %q)", subject, c.prefix)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(payload))
	if err != nil {
		return fmt.Errorf("subject %s (channel %s): payload is not JSON: %w", subject, ch.Name, err)
	}
	var errs []error
	for _, m := range ch.Messages {
		err := m.check(ch, values, doc, msgID)
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("as %s (docs/%s): %w", m.Name, m.File, err))
	}
	return fmt.Errorf("subject %s, msg id %q, payload %s:\n%w", subject, msgID, payload, errors.Join(errs...))
}

func (m *Message) check(ch *Channel, values map[string]string, doc any, msgID string) error {
	if err := m.schema.Validate(doc); err != nil {
		return err
	}
	obj, _ := doc.(map[string]any)
	for name, p := range ch.params {
		if p.field == "" {
			continue
		}
		if got, ok := obj[p.field].(string); !ok || got != values[name] {
			return fmt.Errorf("the subject's %s %q differs from the payload's %s %v", name, values[name], p.field, obj[p.field])
		}
	}
	if len(m.MsgIDs) == 0 {
		return nil
	}
	for _, form := range m.MsgIDs {
		if msgIDForm(form, values, obj).MatchString(msgID) {
			return nil
		}
	}
	return fmt.Errorf("msg id %q is of none of the forms %q", msgID, m.MsgIDs)
}

// msgIDForm turns an x-msg-id form into a regexp: {name} is the channel's parameter of that name,
// else the payload's top-level field (a string or a number), else any non-empty text.
func msgIDForm(form string, values map[string]string, obj map[string]any) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	last := 0
	for _, loc := range placeholder.FindAllStringSubmatchIndex(form, -1) {
		b.WriteString(regexp.QuoteMeta(form[last:loc[0]]))
		name := form[loc[2]:loc[3]]
		if v, ok := values[name]; ok {
			b.WriteString(regexp.QuoteMeta(v))
		} else if v, ok := obj[name]; ok && v != nil {
			b.WriteString(regexp.QuoteMeta(fmt.Sprint(v)))
		} else {
			b.WriteString(".+")
		}
		last = loc[1]
	}
	b.WriteString(regexp.QuoteMeta(form[last:]))
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}
