package gen

import (
	"slices"
	"strings"
	"testing"

	"github.com/cobrowse-connector/cobrowse-connector/configs"
	yaml "go.yaml.in/yaml/v3"
)

// TestValue: a default is written so that YAML reads it back as the same value: strings plain
// only when they cannot be read as something else.
func TestValue(t *testing.T) {
	for _, tc := range []struct {
		v    any
		want string
	}{
		{"", `""`},
		{"info", "info"},
		{"/cometd", "/cometd"},
		{"https://api.zoom.us/v2", "https://api.zoom.us/v2"},
		{"127.0.0.1", "127.0.0.1"},
		{":9180", `":9180"`},
		{"@every 30s", `"@every 30s"`},
		{"nosidinput=1&sid={token}", `"nosidinput=1&sid={token}"`},
		{"true", `"true"`},
		{"4222", `"4222"`},
		{"null", `"null"`},
		{"a \"b\"", `"a \"b\""`},
		{configs.Secret(""), `""`},
		{4222, "4222"},
		{-1, "-1"},
		{false, "false"},
		{configs.Duration{}, "0s"},
		{[]configs.Duration{{Duration: 1e9}, {Duration: 60e9}}, "[1s, 1m]"},
		{[]string{"customer", "long-polling", "a,b"}, `[customer, long-polling, "a,b"]`},
		{[]string{}, "[]"},
	} {
		got := Value(tc.v)
		if got != tc.want {
			t.Errorf("Value(%#v) = %s, want %s", tc.v, got, tc.want)
		}
		// Read back, a string is the same string.
		if s, ok := tc.v.(string); ok {
			var back struct{ K string }
			if err := yaml.Unmarshal([]byte("k: "+got), &back); err != nil || back.K != s {
				t.Errorf("%s reads back as %q (%v)", got, back.K, err)
			}
		}
	}
}

func TestWrap(t *testing.T) {
	got := wrap("one two three four\nfive sixsixsixsix seven", 9)
	want := []string{"one two", "three", "four", "five", "sixsixsixsix", "seven"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	if got := wrap("", 10); len(got) != 0 {
		t.Fatalf("empty doc: %q", got)
	}
}

// TestProse: markup characters are escaped outside code spans only, and pages of docs/ are linked.
func TestProse(t *testing.T) {
	for in, want := range map[string]string{
		"<prefix>.chat.*.message":          `\<prefix\>.chat.\*.message`,
		"run `cobrowse-connector run` <x>": "run `cobrowse-connector run` \\<x\\>",
		"nats.kv_bucket and _x_ and [30m]": `nats.kv_bucket and \_x\_ and \[30m\]`,
		"see docs/zoom.md.":                "see [docs/zoom.md](zoom.md).",
		"a `<b>` c":                        "a `<b>` c",
		`back\slash`:                       `back\\slash`,
	} {
		if got := prose(in); got != want {
			t.Errorf("prose(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestYAMLLayout: the header, a blank line above top-level keys and gaps, comments above keys at
// the key's indentation and within the width, every key once.
func TestYAMLLayout(t *testing.T) {
	keys := []configs.Key{
		{Path: "a", Section: true, Doc: "Section a."},
		{Path: "a.b", Default: 1, Doc: "A long comment that the generator has to wrap because it does not fit on one line of the file at all, no."},
		{Path: "a.c", Section: true},
		{Path: "a.c.d", Default: "x", Doc: "D.\nSecond line.", Gap: true},
		{Path: "e", Default: configs.Duration{}, Doc: "E.", Gap: true},
	}
	got := strings.TrimPrefix(string(YAML(keys)), yamlHeader)
	want := `# Section a.
a:
  # A long comment that the generator has to wrap because it does not fit on one line of the file at
  # all, no.
  b: 1
  c:

    # D.
    # Second line.
    d: x

# E.
e: 0s
`
	if got != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
	// The generated comments (the header is written by hand) fit the width, one long word aside.
	for _, l := range strings.Split(strings.TrimPrefix(string(YAML(configs.Keys())), yamlHeader), "\n") {
		if len(l) > width && strings.Contains(strings.TrimSpace(l[:width]), " ") {
			t.Errorf("a line longer than %d: %s", width, l)
		}
	}
}
