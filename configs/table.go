package configs

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
)

// Key describes one config key as keyTable declares it: default.yaml and docs/configuration.md
// are generated from Keys (go generate ./configs).
type Key struct {
	Path    string // the dotted path: "nats.inbound.max_deliver"
	Section bool   // a mapping of keys, with no value of its own
	// Doc says what the key does: sentences to wrap, "\n" where a new line must start.
	Doc string
	// Default is the default value, of the field's type (Duration, string, Secret, int, bool,
	// []Duration or []string); nil for a section.
	Default any
	// Env is the environment variable that overrides the key (EnvName); "" for a section.
	Env string
	// Type names the value's type in words: "duration", "string", "secret string", "integer",
	// "true or false", "list of durations", "list of strings"; "" for a section.
	Type string
	// Constraints are what Validate requires, in words: the key's own checks, then the rules
	// between keys that involve it. A rule only `run` checks says so.
	Constraints []string
	// Gap is true when default.yaml leaves a blank line above the key.
	Gap bool
}

// Keys returns every config key, sections included, in the order of default.yaml.
func Keys() []Key {
	fields := fieldIndex()
	out := make([]Key, 0, len(keyTable))
	for _, e := range keyTable {
		k := Key{Path: e.path, Section: e.section, Doc: e.doc, Gap: e.gap || !strings.Contains(e.path, ".")}
		for _, c := range e.checks {
			k.Constraints = append(k.Constraints, c.doc)
		}
		for _, r := range rules {
			if slices.Contains(r.keys, e.path) {
				k.Constraints = append(k.Constraints, r.doc)
			}
		}
		if !e.section {
			k.Env = EnvName(e.path)
			k.Default = defaultValue(e, fields[e.path].typ).Interface()
			k.Type = typeName(fields[e.path].typ)
		}
		out = append(out, k)
	}
	return out
}

// defaultValue is e.def as a value of the field's type t: a string converts to a Secret.
func defaultValue(e entry, t reflect.Type) reflect.Value {
	v := reflect.ValueOf(e.def)
	if v.Type() != t && t == secretType && v.Kind() == reflect.String {
		v = v.Convert(t)
	}
	if v.Type() != t {
		panic(fmt.Sprintf("configs: the default of %s is a %s, its field a %s", e.path, v.Type(), t))
	}
	return v
}

func typeName(t reflect.Type) string {
	switch {
	case t == durationType:
		return "duration"
	case t == secretType:
		return "secret string"
	case t.Kind() == reflect.String:
		return "string"
	case t.Kind() == reflect.Int:
		return "integer"
	case t.Kind() == reflect.Bool:
		return "true or false"
	case t.Kind() == reflect.Slice:
		return "list of " + typeName(t.Elem()) + "s"
	}
	panic("configs: no name for the type " + t.String())
}

// field is where a key's value is in Config.
type field struct {
	index []int // for reflect.Value.FieldByIndex
	typ   reflect.Type
}

// fieldIndex maps the dotted path of every field of Config, sections included, to the field.
var fieldIndex = sync.OnceValue(func() map[string]field {
	m := map[string]field{}
	var walk func(t reflect.Type, path string, index []int)
	walk = func(t reflect.Type, path string, index []int) {
		for i := range t.NumField() {
			f := t.Field(i)
			key := join(path, yamlKey(f))
			idx := append(slices.Clone(index), i)
			m[key] = field{index: idx, typ: f.Type}
			if f.Type.Kind() == reflect.Struct && f.Type != durationType {
				walk(f.Type, key, idx)
			}
		}
	}
	walk(reflect.TypeFor[Config](), "", nil)
	return m
})

// keyOrder maps each key's path to its place in keyTable.
var keyOrder = sync.OnceValue(func() map[string]int {
	m := make(map[string]int, len(keyTable))
	for i, e := range keyTable {
		m[e.path] = i
	}
	return m
})

// problems runs every key's checks, then the rules (the run rules only when run is true), and
// returns the problems in the order of the keys in default.yaml: a problem at an item of a list
// ("a.b[2]") at its list, the problems at one key in the order found.
func (c Config) problems(run bool) problemList {
	var r report
	c.checkKeys(&r)
	for _, ru := range rules {
		if !ru.run || run {
			ru.check(&c, &r)
		}
	}
	order := keyOrder()
	place := func(p Problem) int {
		base, _, _ := strings.Cut(p.Key, "[")
		if i, ok := order[base]; ok {
			return i
		}
		return len(order)
	}
	slices.SortStableFunc(r.problems, func(a, b Problem) int { return place(a) - place(b) })
	var l problemList
	for _, p := range r.problems {
		l.add(p)
	}
	return l
}

// checkKeys runs the checks of every key of keyTable on its value in c.
func (c Config) checkKeys(r *report) {
	fields := fieldIndex()
	v := reflect.ValueOf(c)
	for _, e := range keyTable {
		if len(e.checks) == 0 {
			continue
		}
		value := v.FieldByIndex(fields[e.path].index)
		for _, ch := range e.checks {
			ch.fn(r, e.path, value)
		}
	}
}
