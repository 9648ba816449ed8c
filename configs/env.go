package configs

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// EnvPrefix starts the name of every environment override.
const EnvPrefix = "COBROWSE_"

// EnvVar is one environment override: Name overrides the config key Key.
type EnvVar struct {
	Name string // e.g. COBROWSE_NATS_INBOUND_MAX_DELIVER
	Key  string // e.g. nats.inbound.max_deliver
}

// EnvName returns the environment variable that overrides the dotted key: EnvPrefix followed by
// the key upper-cased with its dots turned into underscores.
func EnvName(key string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// EnvVars lists every environment override, one per config key, in the order of the struct.
// They are derived from the yaml tags, so a new key is overridable without more code. The values are read like this:
//
//   - a string or secret: as is (set and empty means empty);
//   - an integer: decimal, surrounding spaces ignored;
//   - a duration: a Go duration string ("30s");
//   - a list: comma-separated items, each trimmed (COBROWSE_CHAT_TRIGGER_ROLES=customer,bot);
//     set and empty means an empty list; an empty item is refused.
//
// A variable that is set, even to "", overrides the file; one that is unset does not. A variable
// that starts with EnvPrefix and is none of these is refused by Load (see Parse).
func EnvVars() []EnvVar {
	var out []EnvVar
	walkLeaves(reflect.New(reflect.TypeFor[Config]()).Elem(), "", func(key string, _ reflect.Value) {
		out = append(out, EnvVar{Name: EnvName(key), Key: key})
	})
	return out
}

// walkLeaves calls fn for every leaf (every field that is not a section) under v, with its key.
func walkLeaves(v reflect.Value, path string, fn func(key string, v reflect.Value)) {
	t := v.Type()
	for i := range t.NumField() {
		key := join(path, yamlKey(t.Field(i)))
		f := v.Field(i)
		if f.Kind() == reflect.Struct && f.Type() != durationType {
			walkLeaves(f, key, fn)
			continue
		}
		fn(key, f)
	}
}

// applyEnv overrides cfg with every variable env finds, recording problems and where each
// overridden key came from.
func (d *decoder) applyEnv(cfg *Config, env func(string) (string, bool)) {
	walkLeaves(reflect.ValueOf(cfg).Elem(), "", func(key string, v reflect.Value) {
		name := EnvName(key)
		s, ok := env(name)
		if !ok {
			return
		}
		d.envs[key] = name
		if err := setString(v, s); err != nil {
			d.add(Problem{Env: name, Key: key, Reason: err.Error()})
		}
	})
}

// IsServiceLinkEnv reports whether name has the shape of a variable Kubernetes injects for each
// Service of the namespace (its "service links"): <SERVICE>_SERVICE_HOST, <SERVICE>_SERVICE_PORT,
// <SERVICE>_SERVICE_PORT_<PORT NAME>, <SERVICE>_PORT and <SERVICE>_PORT_<PORT>_<PROTO>[_...]. A
// Service named cobrowse or cobrowse-<anything> gives names that start with EnvPrefix: they are
// not config overrides, and not refused as unknown ones.
func IsServiceLinkEnv(name string) bool {
	return strings.HasSuffix(name, "_SERVICE_HOST") || strings.Contains(name, "_SERVICE_PORT") ||
		strings.HasSuffix(name, "_PORT") || strings.Contains(name, "_PORT_")
}

// unknownEnv records a problem for each variable of environ that starts with EnvPrefix and
// overrides no key (service links excepted), sorted by name, each once.
func (d *decoder) unknownEnv(environ []string) {
	if len(environ) == 0 {
		return
	}
	vars := EnvVars()
	known := make(map[string]bool, len(vars))
	for _, v := range vars {
		known[v.Name] = true
	}
	var unknown []string
	for _, entry := range environ {
		name, _, _ := strings.Cut(entry, "=")
		if !strings.HasPrefix(name, EnvPrefix) || known[name] || IsServiceLinkEnv(name) || slices.Contains(unknown, name) {
			continue
		}
		unknown = append(unknown, name)
	}
	slices.Sort(unknown)
	for _, name := range unknown {
		reason := "unknown variable, not a config key"
		if s := suggestEnv(name, vars); s != "" {
			reason += " (did you mean " + s + "?)"
		}
		d.add(Problem{Env: shownEnvName(name), Reason: reason})
	}
}

// suggestEnv returns the known variable closest to an unknown one (compared in upper case), if it
// is close enough to be a typo.
func suggestEnv(name string, vars []EnvVar) string {
	if len(name) > 100 {
		return ""
	}
	upper := strings.ToUpper(name)
	best, bestDist := "", 4
	for _, v := range vars {
		if dist := levenshtein(upper, v.Name); dist < bestDist || (dist == bestDist && v.Name < best) {
			best, bestDist = v.Name, dist
		}
	}
	if best == "" || bestDist > (len(best)-len(EnvPrefix))/3 {
		return ""
	}
	return best
}

// shownEnvName cuts a variable's name before a space or control character and to a readable
// length for a message. (A name is not a secret; a value never appears.)
func shownEnvName(name string) string {
	if i := strings.IndexFunc(name, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }); i >= 0 {
		return name[:i] + "…"
	}
	const max = 80
	if utf8.RuneCountInString(name) > max {
		return string([]rune(name)[:max]) + "…"
	}
	return name
}

// setString sets the leaf v from its environment form. The error never repeats a string value
// (strings and secrets cannot fail).
func setString(v reflect.Value, s string) error {
	t := v.Type()
	switch {
	case t == durationType:
		d, err := parseDuration(s)
		if err != nil {
			return err
		}
		v.Set(reflect.ValueOf(d))
	case t.Kind() == reflect.String:
		v.SetString(s)
	case t.Kind() == reflect.Int:
		i, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil || v.OverflowInt(i) {
			if errors.Is(err, strconv.ErrSyntax) {
				return fmt.Errorf("%s is not an integer", quote(s))
			}
			return fmt.Errorf("%s is out of range", quote(s))
		}
		v.SetInt(i)
	case t.Kind() == reflect.Bool:
		switch strings.TrimSpace(s) {
		case "true":
			v.SetBool(true)
		case "false":
			v.SetBool(false)
		default:
			return fmt.Errorf("%s is not true or false", quote(s))
		}
	case t.Kind() == reflect.Slice:
		return setList(v, s)
	default:
		panic(fmt.Sprintf("configs: the unsupported type %s", t))
	}
	return nil
}

// setList sets the list v from its comma-separated environment form; set and empty is an empty
// list.
func setList(v reflect.Value, s string) error {
	out := reflect.MakeSlice(v.Type(), 0, 0)
	if strings.TrimSpace(s) != "" {
		items := strings.Split(s, ",")
		out = reflect.MakeSlice(v.Type(), len(items), len(items))
		for i, item := range items {
			item = strings.TrimSpace(item)
			if item == "" {
				return fmt.Errorf("item %d of the comma-separated list is empty", i)
			}
			if err := setString(out.Index(i), item); err != nil {
				return fmt.Errorf("item %d: %w", i, err)
			}
		}
	}
	v.Set(out)
	return nil
}
