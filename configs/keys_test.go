package configs

import (
	"reflect"
	"slices"
	"strings"
	"testing"
)

// TestKeyTableMatchesStruct: keyTable and Config match one to one. Every field of Config
// (sections included) has exactly one entry, every entry has a field, a section is a struct and a
// leaf is not, a leaf's default and checks are of its field's type, and the table is in tree
// order (each entry under the section opened last).
func TestKeyTableMatchesStruct(t *testing.T) {
	fields := fieldIndex()
	seen := map[string]bool{}
	for _, e := range keyTable {
		if seen[e.path] {
			t.Errorf("%s: declared twice", e.path)
		}
		seen[e.path] = true
		if f, ok := fields[e.path]; ok {
			checkEntry(t, e, f)
		} else {
			t.Errorf("%s: no field of Config has this path", e.path)
		}
	}
	for path := range fields {
		if !seen[path] {
			t.Errorf("%s: a field of Config with no entry in keyTable", path)
		}
	}
	checkTreeOrder(t)
}

// checkEntry checks one entry against its field.
func checkEntry(t *testing.T, e entry, f field) {
	t.Helper()
	isStruct := f.typ.Kind() == reflect.Struct && f.typ != durationType
	if e.section != isStruct {
		t.Errorf("%s: section %v, but its field is a %s", e.path, e.section, f.typ)
	}
	if e.section != (e.def == nil) {
		t.Errorf("%s: a section has no default and a leaf has one (default %v)", e.path, e.def)
	}
	if v := reflect.ValueOf(e.def); !e.section && v.Type() != f.typ && !(f.typ == secretType && v.Kind() == reflect.String) {
		t.Errorf("%s: the default is a %s, the field a %s", e.path, v.Type(), f.typ)
	}
	for _, c := range e.checks {
		if c.typ != f.typ || c.doc == "" {
			t.Errorf("%s: a check of a %s on a field of type %s, described as %q", e.path, c.typ, f.typ, c.doc)
		}
	}
}

// checkTreeOrder checks that each entry of keyTable follows its section, with only that
// section's keys in between.
func checkTreeOrder(t *testing.T) {
	t.Helper()
	var open []string // the sections enclosing the current entry
	for _, e := range keyTable {
		parent := ""
		if i := strings.LastIndex(e.path, "."); i >= 0 {
			parent = e.path[:i]
		}
		for len(open) > 0 && open[len(open)-1] != parent {
			open = open[:len(open)-1]
		}
		if parent != "" && len(open) == 0 {
			t.Errorf("%s: not under its section %s (a section's keys follow it)", e.path, parent)
		}
		if e.section {
			open = append(open, e.path)
		}
	}
}

// TestKeyTableDocumented: every leaf says what it does; a section may leave it to its keys.
func TestKeyTableDocumented(t *testing.T) {
	for _, e := range keyTable {
		if !e.section && strings.TrimSpace(e.doc) == "" {
			t.Errorf("%s: no documentation", e.path)
		}
		if strings.Contains(e.doc, "  ") || strings.HasSuffix(e.doc, " ") {
			t.Errorf("%s: a doubled or trailing space in the documentation", e.path)
		}
	}
}

// TestDefaultIsTheTable: the embedded default.yaml (what Default decodes) sets every key to the
// table's default, and no secret has a default.
func TestDefaultIsTheTable(t *testing.T) {
	fields := fieldIndex()
	var fromTable Config
	v := reflect.ValueOf(&fromTable).Elem()
	for _, e := range keyTable {
		if e.section {
			continue
		}
		f := fields[e.path]
		def := defaultValue(e, f.typ)
		if f.typ == secretType && def.String() != "" {
			t.Errorf("%s: a secret with a default", e.path)
		}
		v.FieldByIndex(f.index).Set(def)
	}
	if got := Default(); !reflect.DeepEqual(got, fromTable) {
		t.Fatalf("default.yaml differs from the table (go generate ./configs):\nfile:\n%s\ntable:\n%s", got, fromTable)
	}
}

// TestRulesNameTheirKeys: every key a rule names is in the table, and every rule is documented.
func TestRulesNameTheirKeys(t *testing.T) {
	for i, r := range rules {
		if r.doc == "" || len(r.keys) == 0 || r.check == nil {
			t.Errorf("rule %d (%v): keys, doc and check are all needed", i, r.keys)
		}
		for _, k := range r.keys {
			if !slices.ContainsFunc(keyTable, func(e entry) bool { return e.path == k }) {
				t.Errorf("rule %d (%s): %s is not a key", i, r.doc, k)
			}
		}
	}
}

// TestKeys: the exported description carries the table, the environment variable, the type and
// the constraints of the checks and of the rules.
func TestKeys(t *testing.T) {
	keys := Keys()
	if len(keys) != len(keyTable) {
		t.Fatalf("%d keys for %d entries", len(keys), len(keyTable))
	}
	byPath := map[string]Key{}
	for _, k := range keys {
		byPath[k.Path] = k
	}
	for _, tc := range []struct {
		path string
		ok   func(Key) bool
	}{
		{"nats.inbound.max_deliver", func(k Key) bool {
			return k.Env == "COBROWSE_NATS_INBOUND_MAX_DELIVER" && k.Default == 6 && k.Type == "integer" &&
				slices.Equal(k.Constraints, []string{"at least 1", "nats.inbound.backoff has at most nats.inbound.max_deliver steps (NATS refuses more)."})
		}},
		{"nats.password", func(k Key) bool { return k.Type == "secret string" && k.Default == Secret("") }},
		{"nats.inbound.backoff", func(k Key) bool {
			return k.Type == "list of durations" && k.Constraints[0] == "each item more than 0s"
		}},
		{"http.listen", func(k Key) bool { return strings.HasPrefix(k.Constraints[0], "empty, or host:port") }},
		{"nats.tls", func(k Key) bool { return k.Section && k.Env == "" && k.Default == nil && k.Doc != "" && !k.Gap }},
		{"nats", func(k Key) bool { return k.Gap }},          // a top-level key
		{"nats.embedded", func(k Key) bool { return k.Gap }}, // the table's gap
	} {
		if k := byPath[tc.path]; !tc.ok(k) {
			t.Errorf("%s: %+v", tc.path, k)
		}
	}
}

// TestKeysAreTheEnvKeys: the leaves of Keys are the keys EnvVars (which walks the struct) lists.
func TestKeysAreTheEnvKeys(t *testing.T) {
	var leaves, vars []string
	for _, k := range Keys() {
		if !k.Section {
			leaves = append(leaves, k.Path)
		}
	}
	for _, v := range EnvVars() {
		vars = append(vars, v.Key)
	}
	slices.Sort(leaves)
	slices.Sort(vars)
	if !slices.Equal(leaves, vars) {
		t.Errorf("the leaves of Keys are not the keys of EnvVars:\n%v\n%v", leaves, vars)
	}
}

// TestProblemsInKeyOrder: problems come in the order of the keys in default.yaml, whatever
// found them (a key's check or a rule), an item of a list at its list.
func TestProblemsInKeyOrder(t *testing.T) {
	c := Default()
	c.CEC.Enabled = true                   // rule: cec.* required
	c.Zoom.Webhook.PreviousSecret = "x"    // rule, zoom.webhook.previous_secret
	c.NATS.Password = "x"                  // rule, nats.password
	c.Log.Level = "loud"                   // check, log.level
	c.NATS.Inbound.Backoff[1] = Duration{} // check, nats.inbound.backoff[1]
	c.NATS.Inbound.MaxDeliver = 2          // rule, nats.inbound.backoff
	c.Cluster.Partitions = 0               // check, cluster.partitions
	err := c.Validate()
	want := `config: 10 problems:
  log.level: "loud" is not one of debug, info, warn, error
  nats.password: set without nats.user
  nats.inbound.backoff[1]: must be > 0
  nats.inbound.backoff: has 5 steps, must be at most max_deliver (2)
  cluster.partitions: must be between 1 and 1024
  zoom.webhook.previous_secret: set without zoom.webhook.secret
  cec.domain: required when cec.enabled is true
  cec.app_key: required when cec.enabled is true
  cec.app_secret: required when cec.enabled is true
  cec.tenant_space_id: required when cec.enabled is true`
	if err == nil || err.Error() != want {
		t.Fatalf("got:\n%v\nwant:\n%s", err, want)
	}
}
