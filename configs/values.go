package configs

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	yaml "go.yaml.in/yaml/v3"
)

// Duration is a time.Duration written in the config as a Go duration string ("30s", "3m",
// "1h30m"). It embeds time.Duration, so cfg.Controller.NoAgentJoin.Duration is the plain value;
// D() says the same thing shorter.
type Duration struct {
	time.Duration
}

// D returns the duration as a time.Duration.
func (d Duration) D() time.Duration { return d.Duration }

// String formats the duration as time.Duration does, without the zero minutes and seconds that
// time.Duration leaves at the end: "3m" rather than "3m0s", "24h" rather than "24h0m0s". The
// result parses back to the same value.
func (d Duration) String() string {
	s := d.Duration.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// parseDuration parses a Go duration string; the error does not repeat the input.
func parseDuration(s string) (Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return Duration{}, fmt.Errorf("%q is not a duration (like \"30s\" or \"3m\")", s)
	}
	return Duration{d}, nil
}

// MarshalText writes the duration as a Go duration string (JSON and text encoders use it).
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := parseDuration(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// MarshalYAML writes the duration as a Go duration string.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// UnmarshalYAML parses a Go duration string. (Parse does not need it; it is there for code that
// decodes a Duration with yaml.v3 directly.)
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: a duration must be a single value", n.Line)
	}
	return d.UnmarshalText([]byte(n.Value))
}

// LogValue logs the duration as its string.
func (d Duration) LogValue() slog.Value { return slog.StringValue(d.String()) }

// Mask is what a set Secret shows instead of its value.
const Mask = "******"

// Secret is a string that must not be shown: String, GoString, Format (every fmt verb), LogValue,
// MarshalText, MarshalJSON and MarshalYAML all give Mask when it is set and "" when it is empty.
// Reveal gives the value, for the one place that hands it to the NATS client.
//
// Because every encoder masks it, a Config written back out (String, yaml or json) carries Mask
// in place of each secret: it is for reading, not for saving.
type Secret string

// Reveal returns the secret's value. Call it only where the value is handed over, never to log it.
func (s Secret) Reveal() string { return string(s) }

// String returns Mask when the secret is set, "" when it is empty.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return Mask
}

// GoString returns the masked value, quoted (%#v).
func (s Secret) GoString() string { return strconv.Quote(s.String()) }

// Format masks the secret under every fmt verb and flag.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		fmt.Fprint(f, s.GoString())
		return
	}
	fmt.Fprintf(f, fmt.FormatString(f, verb), s.String())
}

// LogValue masks the secret in slog output.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText masks the secret for text encoders.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// MarshalJSON masks the secret in JSON.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// MarshalYAML masks the secret in YAML.
func (s Secret) MarshalYAML() (any, error) { return s.String(), nil }
