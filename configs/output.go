package configs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"reflect"
	"slices"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// Redacted returns a copy of c fit to show: the secrets (nats.password, nats.token) hold Mask
// when set, and a password written in nats.url, genesys.url or genesys.origin is replaced by
// Mask. Everything else is unchanged. String, LogValue, MarshalYAML and MarshalJSON all show
// the redacted config; Redacted is for code that wants the struct itself.
func (c Config) Redacted() Config {
	c.NATS.Password = Secret(c.NATS.Password.String())
	c.NATS.Token = Secret(c.NATS.Token.String())
	entries := strings.Split(c.NATS.URL, ",")
	for i, e := range entries {
		entries[i] = redactURL(e)
	}
	c.NATS.URL = strings.Join(entries, ",")
	c.Genesys.URL = redactURL(c.Genesys.URL)
	c.Genesys.Origin = redactURL(c.Genesys.Origin)
	c.NATS.Inbound.Backoff = slices.Clone(c.NATS.Inbound.Backoff)
	c.Chat.TriggerRoles = slices.Clone(c.Chat.TriggerRoles)
	c.Genesys.Transports = slices.Clone(c.Genesys.Transports)
	return c
}

// redactURL replaces the user information of a URL ("scheme://user:pass@host", or
// "token@host:port" as NATS reads it: a user without a password is a token) with Mask, and
// changes nothing else. A value that does not parse as a URL is masked up to its last '@', which
// may hide more than the password but never less (a password with a stray '/' in it, say).
func redactURL(s string) string {
	start := 0
	if i := strings.Index(s, "://"); i >= 0 {
		start = i + 3
	}
	rest := s[start:]
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return s
	}
	if u, err := url.Parse("x://" + rest); err == nil {
		if u.User == nil {
			return s // the '@' is in the path, query or fragment
		}
		end := len(rest)
		if i := strings.IndexAny(rest, "/?#"); i >= 0 {
			end = i
		}
		at = strings.LastIndex(rest[:end], "@")
	}
	return s[:start] + Mask + rest[at:]
}

// plainConfig is Config without its methods, for the encoders.
type plainConfig Config

// String returns the redacted config as YAML, in the shape of default.yaml.
func (c Config) String() string {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(plainConfig(c.Redacted())); err != nil {
		return "config: " + err.Error()
	}
	_ = enc.Close()
	return b.String()
}

// GoString shows the redacted config in Go syntax (%#v).
func (c Config) GoString() string {
	return strings.Replace(fmt.Sprintf("%#v", plainConfig(c.Redacted())), "configs.plainConfig", "configs.Config", 1)
}

// MarshalYAML writes the redacted config.
func (c Config) MarshalYAML() (any, error) { return plainConfig(c.Redacted()), nil }

// MarshalJSON writes the redacted config, with the YAML keys.
func (c Config) MarshalJSON() ([]byte, error) { return json.Marshal(plainConfig(c.Redacted())) }

// LogValue logs the redacted config as nested groups named by the YAML keys
// (config.nats.inbound.max_deliver=6).
func (c Config) LogValue() slog.Value { return groupValue(reflect.ValueOf(c.Redacted())) }

func groupValue(v reflect.Value) slog.Value {
	t := v.Type()
	attrs := make([]slog.Attr, 0, t.NumField())
	for i := range t.NumField() {
		//logvocab:any the configuration's own keys, as in the config file (config.nats.url)
		attrs = append(attrs, slog.Attr{Key: yamlKey(t.Field(i)), Value: leafValue(v.Field(i))})
	}
	return slog.GroupValue(attrs...)
}

func leafValue(v reflect.Value) slog.Value {
	switch {
	case v.Type() == durationType:
		return slog.StringValue(v.Interface().(Duration).String())
	case v.Kind() == reflect.Struct:
		return groupValue(v)
	case v.Type() == secretType:
		return slog.StringValue(v.Interface().(Secret).String())
	case v.Kind() == reflect.String:
		return slog.StringValue(v.String())
	case v.Kind() == reflect.Int:
		return slog.Int64Value(v.Int())
	case v.Kind() == reflect.Bool:
		return slog.BoolValue(v.Bool())
	case v.Kind() == reflect.Slice:
		items := make([]string, v.Len())
		for i := range items {
			items[i] = leafValue(v.Index(i)).String()
		}
		return slog.AnyValue(items)
	default:
		return slog.AnyValue(v.Interface())
	}
}
