package configs

import (
	"fmt"
	"math"
	"net"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"time"
	"unicode"
)

// A check is one constraint on one key's value, declared with the key in keyTable. doc says what
// it requires in words (docs/configuration.md lists it); fn reports what is wrong with a value of
// type typ (the key's field type) as problems at key.
type check struct {
	doc string
	typ reflect.Type
	fn  func(r *report, key string, v reflect.Value)
}

// checkOf makes a check of a value of type T.
func checkOf[T any](doc string, fn func(r *report, key string, v T)) check {
	return check{doc: doc, typ: reflect.TypeFor[T](), fn: func(r *report, key string, v reflect.Value) {
		fn(r, key, v.Interface().(T))
	}}
}

// report collects the problems one validation finds, in any order (see Config.problems).
type report struct {
	problems []Problem
}

func (r *report) addf(key, format string, args ...any) {
	r.problems = append(r.problems, Problem{Key: key, Reason: fmt.Sprintf(format, args...)})
}

// optional applies c to a value that is set (not its type's zero value) and accepts the zero
// value, which the key's documentation gives a meaning ("empty: none").
func optional(c check) check {
	return check{doc: "empty, or " + c.doc, typ: c.typ, fn: func(r *report, key string, v reflect.Value) {
		if !v.IsZero() {
			c.fn(r, key, v)
		}
	}}
}

// each applies c to every item of a list, at the item's indexed key ("a.b[2]").
func each(c check) check {
	return check{doc: "each item " + c.doc, typ: reflect.SliceOf(c.typ), fn: func(r *report, key string, v reflect.Value) {
		for i := range v.Len() {
			c.fn(r, index(key, i), v.Index(i))
		}
	}}
}

// oneOf: one of the allowed strings.
func oneOf(allowed ...string) check {
	list := strings.Join(allowed, ", ")
	return checkOf("one of "+list, func(r *report, key string, v string) {
		if !slices.Contains(allowed, v) {
			r.addf(key, "%s is not one of %s", quote(v), list)
		}
	})
}

// someOf: a non-empty list of the allowed strings, each listed once. what names one item in a
// refusal ("a role"), noun the kind of item ("role", in "must name at least one role").
func someOf(what, noun string, allowed ...string) check {
	list := strings.Join(allowed, ", ")
	return checkOf("at least one of "+list+", each once", func(r *report, key string, items []string) {
		if len(items) == 0 {
			r.addf(key, "must name at least one %s (%s)", noun, list)
		}
		for i, v := range items {
			switch {
			case !slices.Contains(allowed, v):
				r.addf(index(key, i), "%s is not %s (%s)", quote(v), what, list)
			case slices.Index(items, v) < i:
				r.addf(index(key, i), "%s is listed twice", quote(v))
			}
		}
	})
}

// positive: a duration above zero.
func positive() check {
	return checkOf("more than 0s", func(r *report, key string, d Duration) {
		if d.Duration <= 0 {
			r.addf(key, "must be > 0")
		}
	})
}

// notNegative: a duration of zero or more; zero says what 0s means for the key.
func notNegative(zero string) check {
	return checkOf("0s or more (0s: "+zero+")", func(r *report, key string, d Duration) {
		if d.Duration < 0 {
			r.addf(key, "must not be negative (0s: %s)", zero)
		}
	})
}

// atLeast: a duration of at least limit.
func atLeast(limit time.Duration) check {
	return checkOf("at least "+Duration{limit}.String(), func(r *report, key string, d Duration) {
		if d.Duration < limit {
			r.addf(key, "must be at least %s", Duration{limit})
		}
	})
}

// atMost: a duration of at most limit (a key that must also be positive says so with positive).
func atMost(limit time.Duration) check {
	return checkOf("at most "+Duration{limit}.String(), func(r *report, key string, d Duration) {
		if d.Duration > limit {
			r.addf(key, "must be at most %s", Duration{limit})
		}
	})
}

// wholeSeconds: whole seconds from lo to hi; reason is the whole message of a refusal.
func wholeSeconds(lo, hi time.Duration, reason string) check {
	doc := fmt.Sprintf("whole seconds from %s to %s", Duration{lo}, Duration{hi})
	return checkOf(doc, func(r *report, key string, d Duration) {
		if d.Duration < lo || d.Duration > hi || d.Duration%time.Second != 0 {
			r.addf(key, "%s", reason)
		}
	})
}

// between: an integer from lo to hi; note follows the bounds in a refusal (" (8 MiB)").
func between(lo, hi int, note string) check {
	return checkOf(fmt.Sprintf("from %d to %d%s", lo, hi, note), func(r *report, key string, n int) {
		if n < lo || n > hi {
			r.addf(key, "must be between %d and %d%s", lo, hi, note)
		}
	})
}

// atLeastInt: an integer of at least lo.
func atLeastInt(lo int) check {
	return checkOf(fmt.Sprintf("at least %d", lo), func(r *report, key string, n int) {
		if n < lo {
			r.addf(key, "must be at least %d", lo)
		}
	})
}

// positiveInt: an integer above zero.
func positiveInt() check {
	return checkOf("more than 0", func(r *report, key string, n int) {
		if n < 1 {
			r.addf(key, "must be > 0")
		}
	})
}

// count32: a count above zero that fits the uint32 of the circuit breaker's settings.
func count32() check {
	return checkOf(fmt.Sprintf("from 1 to %d", uint32(math.MaxUint32)), func(r *report, key string, n int) {
		switch {
		case n < 1:
			r.addf(key, "must be > 0")
		case n > math.MaxUint32:
			r.addf(key, "must be at most %d", uint32(math.MaxUint32))
		}
	})
}

// portOrRandom: a TCP port, or -1 for a random one.
func portOrRandom() check {
	return checkOf("-1 (a random port) or from 1 to 65535", func(r *report, key string, p int) {
		if p != -1 && (p < 1 || p > 65535) {
			r.addf(key, "must be -1 (a random port) or between 1 and 65535")
		}
	})
}

// hostOrIP: a host name or an IP address, required.
func hostOrIP() check {
	return checkOf("a host name or an IP address", func(r *report, key string, h string) {
		switch {
		case h == "":
			r.addf(key, "required")
		case net.ParseIP(h) == nil && (len(h) > 253 || !hostName.MatchString(h)):
			r.addf(key, "%s is not a host name or an IP address", quote(h))
		}
	})
}

// subjectToken: one NATS subject token, required.
func subjectToken() check {
	return checkOf("one NATS subject token: no '.', '*', '>' or spaces", func(r *report, key string, s string) {
		switch {
		case s == "":
			r.addf(key, "required")
		case strings.ContainsAny(s, ".*>") || strings.IndexFunc(s, notSubjectRune) >= 0:
			r.addf(key, "must be a single NATS subject token")
		}
	})
}

func notSubjectRune(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }

// jetStreamName: a stream, consumer or bucket name as the config allows it, required.
func jetStreamName() check {
	return checkOf("a JetStream name: letters, digits, '-' and '_'", func(r *report, key string, v string) {
		switch {
		case v == "":
			r.addf(key, "required")
		case !jsName.MatchString(v):
			r.addf(key, "%s is not a valid JetStream name (letters, digits, '-' and '_')", quote(v))
		}
	})
}

// cronSpec: a sweep spec parseSweep accepts, required.
func cronSpec() check {
	return checkOf("a 5-field cron spec or a descriptor (@hourly, @every 30s); @every takes whole seconds, at least 1s",
		func(r *report, key string, s string) {
			if s == "" {
				r.addf(key, "required")
			} else if _, err := parseSweep(s); err != nil {
				r.addf(key, "%v", err)
			}
		})
}

// natsURLs: a comma-separated list of NATS URLs (checkNATSURL), each entry's problem numbered
// when there are several.
func natsURLs() check {
	return checkOf("NATS URLs (nats://, tls://, ws://, wss:// or host:port), comma-separated; a path only on ws:// and wss://",
		func(r *report, key string, s string) {
			entries := strings.Split(s, ",")
			for i, entry := range entries {
				reason := checkNATSURL(strings.TrimSpace(entry))
				switch {
				case reason == "":
				case len(entries) > 1:
					r.addf(key, "entry %d: %s", i, reason)
				default:
					r.addf(key, "%s", reason)
				}
			}
		})
}

// genesysURL: the Co-browse cluster URL: http or https, no trailing slash, no credentials, no
// query or fragment. The reason never quotes the URL.
func genesysURL() check {
	return checkOf("an http or https URL without a trailing slash, credentials, query or fragment",
		func(r *report, key string, s string) {
			if reason := checkBaseURL(s); reason != "" {
				r.addf(key, "%s", reason)
				return
			}
			u, _ := url.Parse(s)
			if u.User != nil {
				// The URL reaches logs, errors and the agent view URL.
				r.addf(key, "must not carry credentials (Genesys Co-browse has no URL authentication)")
			}
			if hasQueryOrFragment(u, s) {
				r.addf(key, "must not have a query or a fragment")
			}
		})
}

// serviceURL: a vendor's URL (checkServiceURL), required.
func serviceURL() check {
	return checkOf("an http or https URL without a trailing slash, credentials, query or fragment",
		func(r *report, key string, s string) {
			if reason := checkServiceURL(s); reason != "" {
				r.addf(key, "%s", reason)
			}
		})
}

// origin: scheme://host[:port], http or https (checkOrigin).
func origin() check {
	return checkOf("an origin: http or https, a host and an optional port", func(r *report, key string, s string) {
		if reason := checkOrigin(s); reason != "" {
			r.addf(key, "%s", reason)
		}
	})
}

// listenAddr: host:port to listen on (checkListen).
func listenAddr() check {
	return checkOf("host:port, the host optional (like :8443 or 0.0.0.0:8443), the port from 0 (any free port) to 65535",
		func(r *report, key string, s string) {
			if reason := checkListen(s); reason != "" {
				r.addf(key, "%s", reason)
			}
		})
}

// endpointPath: the path of a CometD endpoint: it starts with '/', has no trailing slash (but
// for "/"), no query, fragment or space.
func endpointPath() check {
	return checkOf("a path starting with '/', without a trailing slash, query or fragment", func(r *report, key string, p string) {
		if !strings.HasPrefix(p, "/") || (p != "/" && strings.HasSuffix(p, "/")) || strings.ContainsAny(p, "?# ") {
			r.addf(key, "must be a path starting with '/', without a trailing slash, query or fragment")
		}
	})
}

// httpPath: the path an HTTP endpoint is served on: it starts with '/', has no query, fragment
// or space.
func httpPath() check {
	return checkOf("a path starting with '/', without a query, fragment or space", func(r *report, key string, p string) {
		if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, "?# ") {
			r.addf(key, "must be a path starting with '/', without a query, fragment or space")
		}
	})
}

// queryParam: the name of a URL query parameter.
func queryParam() check {
	return checkOf("a query parameter name: no '&', '=', '?', '#' or space", func(r *report, key string, s string) {
		if s == "" || strings.ContainsAny(s, "&=?# ") {
			r.addf(key, "must be a query parameter name")
		}
	})
}

// contains: a string that holds sub.
func contains(sub string) check {
	return checkOf("contains "+sub, func(r *report, key string, s string) {
		if !strings.Contains(s, sub) {
			r.addf(key, "must contain %s", sub)
		}
	})
}

// filePath: a file's path. It is not opened here (a config is checked where the files may not
// be); a control character (a newline from a templated value, a NUL) cannot be in a real path.
func filePath() check {
	return checkOf("a file path", func(r *report, key string, p string) {
		if strings.ContainsFunc(p, unicode.IsControl) {
			r.addf(key, "is not a file path (a control character)")
		}
	})
}
