package configs

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzParse: Parse never panics; what it accepts validates, and its String form parses back to
// the same config (redacted); what it refuses is an *Error.
func FuzzParse(f *testing.F) {
	f.Add(DefaultYAML)
	seeds, _ := filepath.Glob("testdata/bad/*.yaml")
	examples, _ := filepath.Glob("examples/*.yaml")
	for _, file := range append(seeds, examples...) {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("a: &a [*a, *a]\nnats: {inbound: {backoff: *a}}\n"))
	f.Add([]byte("x: &x {}\ngenesys: {<<: [*x, *x, *x]}\n"))
	f.Add([]byte("nats: {url: 'nats://u:p@h:1', password: p, user: u}\ncontroller: {sweep: 'TZ=UTC @every 1s'}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data, nil)
		if err != nil {
			if _, ok := errors.AsType[*Error](err); !ok {
				t.Fatalf("refusal is a %T: %v", err, err)
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("accepted a config that does not validate: %v", err)
		}
		back, err := Parse([]byte(cfg.String()), nil)
		if err != nil {
			t.Fatalf("String does not parse back: %v\n%s", err, cfg.String())
		}
		if !reflect.DeepEqual(back, cfg.Redacted()) {
			t.Fatalf("String does not round-trip:\n%s\nparsed back:\n%s", cfg, back)
		}
	})
}
