package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRunRefusesABadConfigNamingTheKey(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"unknown key", "nats:\n  inbound:\n    strem: X\n", `line 3: unknown key "nats.inbound.strem"`},
		{"missing genesys url", "log:\n  level: info\n", "genesys.url: required"},
		{"bad value", "genesys:\n  url: http://gcb:8700/cobrowse\ncontroller:\n  no_agent_join: 0s\n", "controller.no_agent_join"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			var stdout, stderr bytes.Buffer
			code := run(t.Context(), []string{"run", "--config", path}, &stdout, &stderr)
			if code != 2 || !strings.Contains(stderr.String(), tc.want) || !strings.Contains(stderr.String(), "refusing to start") {
				t.Fatalf("exit %d, stderr %q; want 2 and %q", code, stderr.String(), tc.want)
			}
		})
	}
}

func TestConfigCommandMasksSecrets(t *testing.T) {
	t.Setenv("COBROWSE_NATS_PASSWORD", "hunter2-secret")
	t.Setenv("COBROWSE_NATS_USER", "svc")
	var stdout, stderr bytes.Buffer
	if code := run(t.Context(), []string{"config"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if strings.Contains(stdout.String(), "hunter2") || !strings.Contains(stdout.String(), "******") {
		t.Fatalf("secret not masked:\n%s", stdout.String())
	}
}

func TestUnknownCommand(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(t.Context(), []string{"frobnicate"}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "usage") {
		t.Fatalf("exit %d, %q", code, stderr.String())
	}
}
