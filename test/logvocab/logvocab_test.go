package logvocab

import (
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
)

// heading is the heading of docs/logging.md's sections whose tables are the vocabulary.
const heading = "Keys"

// moduleRoot is the directory of the go.mod above the test's directory.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// TestLogKeysAreDocumented is the vocabulary's check: every key the module's code logs under is
// in docs/logging.md's key table, every key there is logged somewhere, and every key can be read.
func TestLogKeysAreDocumented(t *testing.T) {
	root := moduleRoot(t)
	doc := filepath.Join(root, "docs", "logging.md")
	vocab, err := Vocabulary(doc, heading)
	if err != nil {
		t.Fatal(err)
	}
	uses, problems, err := Scan(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(uses) < 100 {
		t.Fatalf("only %d keys found: the scan misses log calls", len(uses))
	}
	for _, p := range problems {
		t.Errorf("%s", p)
	}
	logged := map[string]bool{}
	for _, u := range uses {
		logged[u.Key] = true
		if _, ok := vocab[u.Key]; !ok {
			t.Errorf("%s: log key %q is not in the key table of docs/logging.md: use a key the table has for this meaning, or add a row", u.Pos, u.Key)
		}
	}
	var unused []string
	for k := range vocab {
		if !logged[k] {
			unused = append(unused, k)
		}
	}
	sort.Strings(unused)
	for _, k := range unused {
		t.Errorf("docs/logging.md:%d: key %q is logged nowhere: remove its row", vocab[k], k)
	}
}

func keysOf(uses []Use) []string {
	var ks []string
	for _, u := range uses {
		ks = append(ks, u.Key)
	}
	sort.Strings(ks)
	return ks
}

func TestScanMatchesLogCallsOnly(t *testing.T) {
	src := `package main

import (
	"context"
	"log/slog"
	"net/http"
)

type wrapper struct{ l *slog.Logger }

func (w wrapper) Info(msg string, args ...any) { w.l.Info(msg, args...) }

type request struct{}

func (request) Error(code, description string, data []byte) error { return nil }

const keyConst = "const_key"

func main() {
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler).With("with_key", 1)
	log.Info("m", "info_key", 1, slog.String("attr_key", "v"))
	log.WarnContext(ctx, "m", "ctx_key", 1)
	log.Log(ctx, slog.LevelDebug, "m", "log_key", 1)
	log.LogAttrs(ctx, slog.LevelInfo, "m", slog.Int("logattrs_key", 1))
	slog.Error("m", keyConst, 1, "group_key", slog.GroupValue(slog.Bool("member_key", true)))
	_ = slog.Group("group_name", "in_group", 1)
	_ = slog.Attr{Key: "literal_key", Value: slog.IntValue(1)}
	wrapper{log}.Info("m", "wrapped_key", 1)
	args := []any{"slice_key", 1}
	args = append(args, "appended_key", 2)
	log.Debug("m", args...)

	// Not log calls: their strings are no keys.
	var w http.ResponseWriter
	http.Error(w, "not_a_key", http.StatusBadRequest)
	_ = request{}.Error("400", "not_a_key_either", nil)
}
`
	uses, problems, err := ScanSource("main.go", src)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("problem: %s", p)
	}
	want := []string{"appended_key", "attr_key", "const_key", "ctx_key", "group_key", "group_name", "in_group",
		"info_key", "literal_key", "log_key", "logattrs_key", "member_key", "slice_key", "with_key", "wrapped_key"}
	sort.Strings(want)
	if got := keysOf(uses); !slices.Equal(got, want) {
		t.Errorf("keys %q\nwant %q", got, want)
	}
	for _, u := range uses {
		if u.Key == "info_key" && (u.Pos.Filename != "main.go" || u.Pos.Line != 22) {
			t.Errorf("info_key at %s, want main.go:22", u.Pos)
		}
	}
}

func TestScanComputedKeys(t *testing.T) {
	src := `package main

import "log/slog"

func main() {
	log := slog.New(slog.DiscardHandler)
	k := "computed"
	log.Info("m", k, 1)                 // line 8: a problem
	log.Info("m", 42)                   // line 9: a problem (!BADKEY)
	//logvocab:keys first second
	log.Info("m", k, 1)
	log.Info("m", k, 1) //logvocab:any the keys of another vocabulary
	//logvocab:keys
	log.Info("m", k, 1) // line 14: an empty directive is a problem
	_ = slog.String(k, "v") // line 15: a problem
}
`
	uses, problems, err := ScanSource("main.go", src)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := keysOf(uses), []string{"first", "second"}; !slices.Equal(got, want) {
		t.Errorf("keys %q, want %q", got, want)
	}
	var lines []int
	for _, p := range problems {
		lines = append(lines, p.Pos.Line)
	}
	if want := []int{8, 9, 14, 15}; !slices.Equal(lines, want) {
		t.Errorf("problems on lines %v, want %v: %v", lines, want, problems)
	}
	if len(problems) == 4 && !strings.Contains(problems[1].Why, "!BADKEY") {
		t.Errorf("the non-key's problem does not say what slog makes of it: %s", problems[1])
	}
}

func TestVocabularyReadsTheKeySections(t *testing.T) {
	path := filepath.Join(t.TempDir(), "logging.md")
	md := "# Logging\n\n| `not_a_key` | before the section |\n\n" +
		"## Keys\n\n| key | meaning |\n| --- | --- |\n| `a` | one |\n| `b`, `c` | two keys, one row |\n\n" +
		"### Keys of logged values\n\n| `d` | in a subsection |\n\n" +
		"### More\n\n| `f` | in another subsection |\n\n" +
		"## Levels\n\n| `e` | after the section |\n"
	if err := os.WriteFile(path, []byte(md), 0o644); err != nil {
		t.Fatal(err)
	}
	keys, err := Vocabulary(path, "Keys")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for k := range keys {
		got = append(got, k)
	}
	sort.Strings(got)
	if want := []string{"a", "b", "c", "d", "f"}; !slices.Equal(got, want) {
		t.Errorf("keys %q, want %q", got, want)
	}
	if keys["a"] != 9 {
		t.Errorf("a on line %d, want 9", keys["a"])
	}

	dup := md + "## Keys again\n\n| `a` | twice |\n"
	if err := os.WriteFile(path, []byte(dup), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Vocabulary(path, "Keys"); err == nil || !strings.Contains(err.Error(), `key "a" listed twice`) {
		t.Errorf("a key listed twice: %v", err)
	}
}
