// Command cobrowse-connector is the co-browse sidecar: `run` starts the daemon, `demo` runs it on
// embedded defaults with a scripted conversation, `config` checks the config as `run` does and
// prints it. main turns flags into a config and signals into a context; everything else lives in
// the daemon package.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/cmd/cobrowse-connector/daemon"
	"github.com/cobrowse-connector/cobrowse-connector/configs"
)

const usage = `usage:
  cobrowse-connector run [--config FILE]   run the daemon (default config: the embedded configs/default.yaml)
  cobrowse-connector demo [--vendor genesys|zoom|cec] [--end transferred|closed]
                                           run the daemon on embedded defaults (embedded NATS, built-in
                                           3-node Co-browse Server) with a scripted conversation
  cobrowse-connector version                print the version and the Go release it was built with
  cobrowse-connector cluster [--config FILE] status | add MEMBER... | remove MEMBER... | step-down MEMBER
                                           show or change the replicas' consumer group on the NATS of the
                                           config (nats.url): members and their partitions, as JSON
  cobrowse-connector config [--config FILE] [--check]
                                           check the config as run does and print it, secrets masked;
                                           --check: only check it (no output when it is valid). A
                                           refused config exits 2 with every problem, as run does.

Every config key can be overridden from the environment: COBROWSE_<KEY PATH>, e.g. COBROWSE_NATS_URL.
A COBROWSE_ variable that names no key is refused (Kubernetes service links excepted).
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	configPath := fs.String("config", "", "YAML config file (default: the embedded default config)")
	end := fs.String("end", "transferred", "demo: how the interaction ends: transferred or closed")
	vendor := fs.String("vendor", "genesys", "demo: the co-browse vendor it plays: genesys, zoom or cec")
	check := fs.Bool("check", false, "config: only check the config, print nothing when it is valid")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if fs.NArg() > 0 && args[0] != "cluster" {
		fmt.Fprintf(stderr, "cobrowse-connector %s: unexpected arguments %q\n", args[0], fs.Args())
		return 2
	}
	if *check && args[0] != "config" {
		// `run --check` must not start the daemon it seems to only check.
		fmt.Fprintf(stderr, "cobrowse-connector: --check is for the config command (cobrowse-connector config --check)\n")
		return 2
	}
	switch args[0] {
	case "run":
		cfg, err := loadConfig(*configPath)
		if err != nil {
			fmt.Fprintf(stderr, "cobrowse-connector: refusing to start: %v\n", err)
			return 2
		}
		if err := daemon.Run(ctx, cfg, daemon.Options{ConfigPath: *configPath}); err != nil && !errors.Is(err, context.Canceled) {
			fmt.Fprintf(stderr, "cobrowse-connector: %v\n", err)
			return 1
		}
		return 0
	case "demo":
		if err := daemon.Demo(ctx, stdout, daemon.DemoOptions{Vendor: *vendor, End: *end, Pace: 700 * time.Millisecond}); err != nil {
			fmt.Fprintf(stderr, "cobrowse-connector demo: %v\n", err)
			return 1
		}
		return 0
	case "config":
		cfg, err := loadConfig(*configPath)
		if err != nil {
			fmt.Fprintf(stderr, "cobrowse-connector: %v\n", err)
			return 2
		}
		if !*check {
			fmt.Fprint(stdout, cfg.String())
		}
		return 0
	case "cluster":
		if fs.NArg() == 0 {
			fmt.Fprintf(stderr, "cobrowse-connector cluster: name an action: status, add, remove or step-down\n")
			return 2
		}
		cfg, err := loadConfig(*configPath)
		if err != nil {
			fmt.Fprintf(stderr, "cobrowse-connector: %v\n", err)
			return 2
		}
		if err := daemon.ClusterCommand(ctx, cfg, fs.Arg(0), fs.Args()[1:], stdout); err != nil {
			fmt.Fprintf(stderr, "cobrowse-connector cluster: %v\n", err)
			return 1
		}
		return 0
	case "version":
		fmt.Fprintf(stdout, "cobrowse-connector %s (go %s)\n", daemon.BuildVersion(), daemon.GoVersion())
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "cobrowse-connector: unknown command %q\n%s", args[0], usage)
	return 2
}

// loadConfig loads the config file at path ("": the embedded default) with the environment, and
// checks it as `run` needs it (configs.Config.ValidateRun). `run` and `config` both use it, so
// that `config` accepts exactly what `run` accepts. A refusal names the file.
func loadConfig(path string) (configs.Config, error) {
	cfg, err := configs.Load(path)
	if err != nil {
		return configs.Config{}, err
	}
	if err := cfg.ValidateRun(); err != nil {
		if e, ok := errors.AsType[*configs.Error](err); ok {
			e.File = path
		}
		return configs.Config{}, err
	}
	return cfg, nil
}
