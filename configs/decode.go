package configs

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	yaml "go.yaml.in/yaml/v3"
)

// The decoder walks the YAML node tree and the Config struct side by side instead of letting
// yaml.v3 decode: that way every problem names the key's full dotted path and line, a value that
// might be a secret is never echoed, duplicate keys are caught, and all problems are collected.
//
// Aliases and merge keys (<<) are followed. The walk follows the struct, whose depth is fixed, so
// aliases cannot make it loop; a budget of visited nodes stops merge-key expansion bombs.

var (
	durationType = reflect.TypeFor[Duration]()
	secretType   = reflect.TypeFor[Secret]()
)

// nodeBudget bounds the nodes one decode visits (a real config has a few hundred at most).
const nodeBudget = 100_000

type decoder struct {
	problemList
	lines     map[string]int    // key path -> the line of the file that set it
	envs      map[string]string // key path -> the environment variable that set it
	budget    int
	exhausted bool
	merging   map[*yaml.Node]bool // mappings being merged, against merge cycles
}

func newDecoder() *decoder {
	return &decoder{
		lines:   map[string]int{},
		envs:    map[string]string{},
		budget:  nodeBudget,
		merging: map[*yaml.Node]bool{},
	}
}

// err returns the problems found as an *Error.
func (d *decoder) err(file string) *Error {
	return &Error{File: file, Problems: d.problems, More: d.more}
}

// locate adds to each problem where its key's value came from: the environment variable that
// set it, else the line of the file. An indexed key ("a.b[2]") falls back to its list.
func (d *decoder) locate(ps []Problem) {
	for i := range ps {
		p := &ps[i]
		if p.Key == "" || p.Line != 0 || p.Env != "" {
			continue
		}
		base, _, _ := strings.Cut(p.Key, "[")
		if env, ok := d.envs[base]; ok {
			p.Env = env
		} else if line, ok := d.lines[p.Key]; ok {
			p.Line = line
		} else if line, ok := d.lines[base]; ok {
			p.Line = line
		}
	}
}

// spend counts one visited node; false once the budget is spent.
func (d *decoder) spend(line int) bool {
	d.budget--
	if d.budget >= 0 {
		return true
	}
	if !d.exhausted {
		d.exhausted = true
		d.add(Problem{Line: line, Reason: fmt.Sprintf("the config expands to more than %d values (aliases or merge keys?)", nodeBudget)})
	}
	return false
}

// resolve follows aliases to the node they name.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	if n != nil && n.Kind == yaml.AliasNode {
		return nil
	}
	return n
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return "a single value"
	case yaml.DocumentNode:
		return "a document"
	default:
		return "an alias"
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func index(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// quote quotes a value for a message, cut to a readable length. Never call it on a secret.
func quote(s string) string {
	const max = 60
	if utf8.RuneCountInString(s) > max {
		s = string([]rune(s)[:max]) + "…"
	}
	return strconv.Quote(s)
}

// safeKey shortens a key written in the file before it goes into a message: a key with a space,
// '=' or ':' in it is likely a key and its value run together ("password hunter2"), and the value
// might be a secret.
func safeKey(k string) string {
	if i := strings.IndexFunc(k, func(r rune) bool { return unicode.IsSpace(r) || r == '=' || r == ':' }); i >= 0 {
		return k[:i] + "…"
	}
	const max = 40
	if utf8.RuneCountInString(k) > max {
		return string([]rune(k)[:max]) + "…"
	}
	return k
}

// fieldsOf maps the yaml keys of a struct type to field indexes.
func fieldsOf(t reflect.Type) map[string]int {
	m := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		m[yamlKey(t.Field(i))] = i
	}
	return m
}

func yamlKey(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	return name
}

// value decodes n into v, the field at path. A null leaves v as it is (the default).
func (d *decoder) value(n *yaml.Node, v reflect.Value, path string) {
	line := n.Line
	n = resolve(n)
	if n == nil || !d.spend(line) || isNull(n) {
		return
	}
	kind, want := nodeKind(v.Type(), path)
	if n.Kind != kind {
		d.add(Problem{Line: line, Key: path, Reason: "must be " + want + ", not " + kindName(n)})
		return
	}
	switch kind {
	case yaml.MappingNode:
		d.mapping(n, v, path)
	case yaml.SequenceNode:
		out := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			key := index(path, i)
			d.lines[key] = item.Line
			d.value(item, out.Index(i), key)
		}
		v.Set(out)
	default:
		if reason := setScalar(n, v); reason != "" {
			d.add(Problem{Line: line, Key: path, Reason: reason})
		}
	}
}

// nodeKind is the kind of YAML node a field of type t takes, and how a message names its value.
func nodeKind(t reflect.Type, path string) (yaml.Kind, string) {
	switch {
	case t == durationType:
		return yaml.ScalarNode, "a duration"
	case t.Kind() == reflect.Struct:
		return yaml.MappingNode, "a mapping of keys"
	case t.Kind() == reflect.String:
		return yaml.ScalarNode, "a single value"
	case t.Kind() == reflect.Int:
		return yaml.ScalarNode, "an integer"
	case t.Kind() == reflect.Bool:
		return yaml.ScalarNode, "true or false"
	case t.Kind() == reflect.Slice:
		return yaml.SequenceNode, "a list"
	}
	panic(fmt.Sprintf("configs: field %s has the unsupported type %s", path, t))
}

// setScalar sets the leaf v from the scalar node n, or returns why it cannot.
func setScalar(n *yaml.Node, v reflect.Value) string {
	switch t := v.Type(); {
	case t == durationType:
		dur, err := parseDuration(n.Value)
		if err != nil {
			return err.Error()
		}
		v.Set(reflect.ValueOf(dur))
	case t.Kind() == reflect.String:
		var s string
		if err := n.Decode(&s); err != nil {
			// Only a malformed !!binary gets here; say nothing of the value (it may be a secret).
			return "is not a valid string (" + n.ShortTag() + ")"
		}
		v.SetString(s)
	case t.Kind() == reflect.Int:
		var i int64
		if err := n.Decode(&i); err != nil || v.OverflowInt(i) {
			if _, perr := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, 64); err == nil || errors.Is(perr, strconv.ErrRange) {
				return quote(n.Value) + " is out of range"
			}
			return quote(n.Value) + " is not an integer"
		}
		v.SetInt(i)
	case t.Kind() == reflect.Bool:
		// Only true and false: YAML 1.1's yes/no/on/off are refused, not guessed at.
		if n.Tag != "!!bool" || (n.Value != "true" && n.Value != "false") {
			return quote(n.Value) + " is not true or false"
		}
		v.SetBool(n.Value == "true")
	}
	return ""
}

// mapping decodes the mapping n into the struct v at path: merge keys first, so that the
// mapping's own keys win over merged ones.
func (d *decoder) mapping(n *yaml.Node, v reflect.Value, path string) {
	if !d.spend(n.Line) {
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i]; k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			d.merge(n.Content[i+1], v, path)
		}
	}
	fields := fieldsOf(v.Type())
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			continue
		}
		rk := resolve(k)
		if rk == nil || rk.Kind != yaml.ScalarNode {
			d.add(Problem{Line: k.Line, Key: path, Reason: "has a key that is not a plain name"})
			continue
		}
		name := rk.Value
		if first, dup := seen[name]; dup {
			d.add(Problem{Line: k.Line, Reason: fmt.Sprintf("duplicate key %s (first on line %d)", strconv.Quote(join(path, safeKey(name))), first)})
			continue
		}
		seen[name] = k.Line
		fi, ok := fields[name]
		if !ok {
			reason := "unknown key " + strconv.Quote(join(path, safeKey(name)))
			if s := suggest(name, fields); s != "" {
				reason += fmt.Sprintf(" (did you mean %q?)", join(path, s))
			}
			d.add(Problem{Line: k.Line, Reason: reason})
			continue
		}
		full := join(path, name)
		d.lines[full] = k.Line
		d.value(val, v.Field(fi), full)
	}
}

// merge applies the value of a merge key (<<): a mapping, or a list of mappings where the earlier
// ones win.
func (d *decoder) merge(val *yaml.Node, v reflect.Value, path string) {
	line := val.Line
	r := resolve(val)
	bad := func(l int) {
		d.add(Problem{Line: l, Key: path, Reason: "the merge key << takes a mapping or a list of mappings"})
	}
	switch {
	case r == nil:
		bad(line)
	case r.Kind == yaml.MappingNode:
		d.mergeOne(r, v, path, line)
	case r.Kind == yaml.SequenceNode:
		for i := len(r.Content) - 1; i >= 0; i-- {
			item := resolve(r.Content[i])
			if item == nil || item.Kind != yaml.MappingNode {
				bad(r.Content[i].Line)
				continue
			}
			d.mergeOne(item, v, path, r.Content[i].Line)
		}
	default:
		bad(line)
	}
}

func (d *decoder) mergeOne(m *yaml.Node, v reflect.Value, path string, line int) {
	if d.merging[m] {
		d.add(Problem{Line: line, Key: path, Reason: "merges a mapping into itself"})
		return
	}
	d.merging[m] = true
	d.mapping(m, v, path)
	delete(d.merging, m)
}

// suggest returns the known key closest to an unknown one, if it is close enough to be a typo.
func suggest(name string, fields map[string]int) string {
	if len(name) > 64 {
		return ""
	}
	best, bestDist := "", 3
	for k := range fields {
		if dist := levenshtein(name, k); dist < bestDist || (dist == bestDist && best != "" && k < best) {
			best, bestDist = k, dist
		}
	}
	if best != "" && bestDist > len(best)/3 {
		return ""
	}
	return best
}

func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
