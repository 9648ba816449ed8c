package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
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
	t.Setenv("COBROWSE_GENESYS_URL", "http://gcb.example:8700/cobrowse") // `config` checks as `run` does
	t.Setenv("COBROWSE_NATS_URL", "nats://nats.example:4222")
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

// TestUnknownCommand: an unknown command, or none, is refused with the usage on stderr.
func TestUnknownCommand(t *testing.T) {
	for _, args := range [][]string{{"frobnicate"}, {}, {"--config", "x.yaml"}, {"help", "frobnicate"}} {
		var stdout, stderr bytes.Buffer
		if code := run(t.Context(), args, &stdout, &stderr); code != 2 || stdout.Len() != 0 || !strings.Contains(stderr.String(), "usage:") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q", args, code, stdout.String(), stderr.String())
		}
	}
}

// TestCommandHelp: `CMD -h`, `CMD --help` and `help CMD` print that command's usage and flags on
// stdout and exit 0, for every command.
func TestCommandHelp(t *testing.T) {
	for _, c := range commands {
		for _, args := range [][]string{{c.name, "-h"}, {c.name, "--help"}, {"help", c.name}} {
			var stdout, stderr bytes.Buffer
			code := run(t.Context(), args, &stdout, &stderr)
			if code != 0 || stderr.Len() != 0 || !strings.HasPrefix(stdout.String(), "usage: cobrowse-connector "+c.synopsis+"\n") {
				t.Errorf("%q: exit %d, stdout %q, stderr %q", args, code, stdout.String(), stderr.String())
			}
		}
	}
	var stdout, stderr bytes.Buffer
	if run(t.Context(), []string{"demo", "-h"}, &stdout, &stderr); !strings.Contains(stdout.String(), "-verbose") || !strings.Contains(stdout.String(), "-vendor string") {
		t.Errorf("demo -h lists no flags:\n%s", stdout.String())
	}
	stdout.Reset()
	if run(t.Context(), []string{"run", "-h"}, &stdout, &stderr); !strings.Contains(stdout.String(), "-config FILE") || strings.Contains(stdout.String(), "-vendor") {
		t.Errorf("run -h:\n%s", stdout.String())
	}
	// Help about help is the usage (it once recursed until the stack overflowed).
	for _, args := range [][]string{{"help", "help"}, {"help", "-h"}, {"-h", "-h"}, {"--help", "--help"}} {
		stdout.Reset()
		stderr.Reset()
		if code := run(t.Context(), args, &stdout, &stderr); code != 0 || !strings.HasPrefix(stdout.String(), "usage:") || stderr.Len() != 0 {
			t.Errorf("%q: exit %d, stdout %q, stderr %q", args, code, stdout.String(), stderr.String())
		}
	}
	stdout.Reset()
	if code := run(t.Context(), []string{"help", "nope"}, &stdout, &stderr); code != 2 || stdout.Len() != 0 {
		t.Errorf("help of an unknown command: exit %d, stdout %q", code, stdout.String())
	}
}

// TestFlagOfAnotherCommand: each command has its own flags; another command's flag is refused
// with a message that names the commands it belongs to, and the command's usage, on stderr.
func TestFlagOfAnotherCommand(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "--vendor", "zoom"}, "--vendor is a flag of demo, sandbox, not of run"},
		{[]string{"config", "--verbose"}, "--verbose is a flag of demo, not of config"},
		{[]string{"version", "--config", "x.yaml"}, "--config is a flag of run, config, cluster, health, not of version"},
		{[]string{"demo", "--nats-port", "4222"}, "--nats-port is a flag of sandbox, not of demo"},
		{[]string{"demo", "--bogus"}, "flag provided but not defined: -bogus\n"},
		{[]string{"demo", "--end"}, "flag needs an argument: -end"},
		{[]string{"sandbox", "--nats-port", "many"}, `invalid value "many" for flag -nats-port`},
	} {
		var stdout, stderr bytes.Buffer
		code := run(t.Context(), tc.args, &stdout, &stderr)
		if code != 2 || stdout.Len() != 0 || !strings.Contains(stderr.String(), tc.want) || !strings.Contains(stderr.String(), "usage: cobrowse-connector "+tc.args[0]) {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want 2 and %q", tc.args, code, stdout.String(), stderr.String(), tc.want)
		}
	}
}

// TestBadFlagValues: a flag value a command cannot use is refused before anything starts.
func TestBadFlagValues(t *testing.T) {
	var stdout, stderr bytes.Buffer
	stderr.Reset()
	if code := run(t.Context(), []string{"demo", "--vendor", "genesis"}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), `--vendor "genesis"`) {
		t.Errorf("demo --vendor genesis: exit %d, stderr %q", code, stderr.String())
	}
	if code := run(t.Context(), []string{"sandbox", "--vendor", "genesis"}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), `--vendor: "genesis"`) {
		t.Errorf("sandbox --vendor genesis: exit %d, stderr %q", code, stderr.String())
	}
	stderr.Reset()
	if code := run(t.Context(), []string{"demo", "--end", "vanished"}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), `--end "vanished"`) {
		t.Errorf("demo --end vanished: exit %d, stderr %q", code, stderr.String())
	}
}

// TestConfigValidatesLikeRun: `config` and `config --check` accept exactly what `run` accepts,
// and refuse the rest with the same problems and exit status 2.
func TestConfigValidatesLikeRun(t *testing.T) {
	dir := t.TempDir()
	write := func(name, yaml string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	good := write("good.yaml", "genesys:\n  url: http://gcb.example:8700/cobrowse\nnats:\n  url: nats://nats.example:4222\n")
	for _, tc := range []struct {
		name, path, want string
	}{
		{"no genesys url", write("no_url.yaml", "log:\n  level: debug\n"), "genesys.url: required"},
		{"the embedded default", "", "genesys.url: required"},
		{"bad value", write("bad.yaml", "genesys:\n  url: http://gcb.example:8700/cobrowse\nnats:\n  url: nats//n1.example:4222\n"),
			`line 4: nats.url: "nats//n1.example:4222" is not a NATS URL`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"--config", tc.path}
			if tc.path == "" {
				args = nil
			}
			for _, cmd := range [][]string{{"config"}, {"config", "--check"}} {
				var stdout, stderr bytes.Buffer
				code := run(t.Context(), append(cmd, args...), &stdout, &stderr)
				if code != 2 || stdout.Len() != 0 || !strings.Contains(stderr.String(), tc.want) {
					t.Errorf("%v: exit %d, stdout %q, stderr %q; want 2, nothing, and %q", cmd, code, stdout.String(), stderr.String(), tc.want)
				}
				if tc.path != "" && !strings.Contains(stderr.String(), "config "+tc.path+":") {
					t.Errorf("%v: the message does not name the file: %q", cmd, stderr.String())
				}
			}
		})
	}

	// A good config: --check says nothing and exits 0; config prints it.
	var stdout, stderr bytes.Buffer
	if code := run(t.Context(), []string{"config", "--check", "--config", good}, &stdout, &stderr); code != 0 || stdout.Len() != 0 || stderr.Len() != 0 {
		t.Fatalf("config --check on a good config: exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
	if code := run(t.Context(), []string{"config", "--config", good}, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "url: http://gcb.example:8700/cobrowse") {
		t.Fatalf("config on a good config: exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
}

// TestCheckIsForConfigOnly: `run --check` must not start the daemon that it seems to only check.
func TestCheckIsForConfigOnly(t *testing.T) {
	for _, cmd := range []string{"run", "demo"} {
		var stdout, stderr bytes.Buffer
		if code := run(t.Context(), []string{cmd, "--check"}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "--check is a flag of config, not of "+cmd) {
			t.Errorf("%s --check: exit %d, stderr %q", cmd, code, stderr.String())
		}
	}
}

func TestUnknownEnvRefused(t *testing.T) {
	t.Setenv("COBROWSE_GENESYS_URL", "http://gcb.example:8700/cobrowse")
	t.Setenv("COBROWSE_NATS_URLS", "nats://n1.example:4222")
	want := "env COBROWSE_NATS_URLS: unknown variable, not a config key (did you mean COBROWSE_NATS_URL?)"
	for _, args := range [][]string{{"run"}, {"config"}, {"config", "--check"}} {
		var stdout, stderr bytes.Buffer
		if code := run(t.Context(), args, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), want) {
			t.Errorf("%v: exit %d, stderr %q", args, code, stderr.String())
		}
	}
}

// TestUsage: the top-level usage lists every command, on stdout for help.
func TestUsage(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"-h"}, {"--help"}} {
		var stdout, stderr bytes.Buffer
		if code := run(t.Context(), args, &stdout, &stderr); code != 0 || stderr.Len() != 0 || !strings.Contains(stdout.String(), "config [--config FILE] [--check]") {
			t.Fatalf("%q: exit %d, usage:\n%s", args, code, stdout.String())
		}
		for _, name := range []string{"run", "demo", "sandbox", "config", "cluster", "version"} {
			if !strings.Contains(stdout.String(), "\n  cobrowse-connector "+name) {
				t.Errorf("the usage lacks %s:\n%s", name, stdout.String())
			}
		}
	}
}

// TestVersion: `version` prints the build's version and Go release, and exits 0.
func TestVersion(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(t.Context(), []string{"version"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if !regexp.MustCompile(`^cobrowse-connector \S+ \(go \S+\)\n$`).MatchString(out.String()) {
		t.Fatalf("version output %q", out.String())
	}
}

// TestArguments: only cluster takes arguments after its flags; cluster needs an action, and works
// on the configured NATS (not an embedded one).
func TestArguments(t *testing.T) {
	t.Setenv("COBROWSE_GENESYS_URL", "http://gcb.example:8700/cobrowse")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"run", "extra"}, 2, `cobrowse-connector run: unexpected arguments ["extra"]`},
		{[]string{"version", "x"}, 2, "unexpected arguments"},
		{[]string{"demo", "zoom"}, 2, `cobrowse-connector demo: unexpected arguments ["zoom"]`},
		{[]string{"config", "x.yaml"}, 2, "unexpected arguments"},
		{[]string{"sandbox", "now"}, 2, "unexpected arguments"},
		{[]string{"run", "--config", "x.yaml", "extra"}, 2, "unexpected arguments"},
		{[]string{"cluster", "add", "r2", "--config", "x.yaml"}, 2, `"--config" after the action: flags go before it`},
		{[]string{"cluster"}, 2, "name an action: status, add, remove or step-down"},
		{[]string{"cluster", "status"}, 2, "nats.url: required"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(t.Context(), tc.args, &stdout, &stderr); code != tc.code || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%v: exit %d, stderr %q", tc.args, code, stderr.String())
		}
	}
}

// TestFilesCheckedLikeRun: a CA or key file that cannot be used is refused by run, config and
// config --check alike, with the key, before anything connects.
func TestFilesCheckedLikeRun(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("COBROWSE_GENESYS_URL", "https://gcb.example:8700/cobrowse")
	t.Setenv("COBROWSE_NATS_URL", "nats://127.0.0.1:1")
	t.Setenv("COBROWSE_GENESYS_CA_FILE", garbage)
	t.Setenv("COBROWSE_NATS_NKEY_SEED_FILE", filepath.Join(dir, "missing.nk"))
	for _, args := range [][]string{{"run"}, {"config"}, {"config", "--check"}} {
		var stdout, stderr bytes.Buffer
		code := run(t.Context(), args, &stdout, &stderr)
		if code != 2 || stdout.Len() != 0 || !strings.Contains(stderr.String(), "genesys.ca_file: "+garbage+" holds no PEM certificate") ||
			!strings.Contains(stderr.String(), "nats.nkey_seed_file: ") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q", args, code, stdout.String(), stderr.String())
		}
	}
}
