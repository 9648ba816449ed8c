package configs

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
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

// EnvVars lists every environment override, one per config key, in the order of the struct
// (which is the order of default.yaml). They are derived from the yaml tags, so a new key is
// overridable without more code. The values are read like this:
//
//   - a string or secret: as is (set and empty means empty);
//   - an integer: decimal, surrounding spaces ignored;
//   - a duration: a Go duration string ("30s");
//   - a list: comma-separated items, each trimmed (COBROWSE_CHAT_TRIGGER_ROLES=customer,bot);
//     set and empty means an empty list; an empty item is refused.
//
// A variable that is set, even to "", overrides the file; one that is unset does not.
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
			if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrSyntax {
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
		out := reflect.MakeSlice(t, 0, 0)
		if strings.TrimSpace(s) != "" {
			items := strings.Split(s, ",")
			out = reflect.MakeSlice(t, len(items), len(items))
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
	default:
		panic(fmt.Sprintf("configs: the unsupported type %s", t))
	}
	return nil
}
