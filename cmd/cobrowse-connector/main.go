// Command cobrowse-connector is the co-browse sidecar: `run` starts the daemon, `demo` runs it on
// embedded defaults with a scripted conversation, `sandbox` serves the vendors' stand-ins for a
// daemon of one's own, `config` checks the config as `run` does and prints it, `cluster` changes
// the replicas' consumer group. main turns arguments into a config and signals into a context;
// everything else lives in the daemon package.
//
// Each command is one entry of the commands table: its name, its synopsis and what it does, and a
// builder that declares its own flags on a FlagSet and returns its action. A flag of one command is
// refused by another; `cobrowse-connector CMD -h` prints that command's usage.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/cmd/cobrowse-connector/daemon"
	"github.com/cobrowse-connector/cobrowse-connector/configs"
)

// The exit statuses: 2 for a usage error or a refused config, 1 for a failure at run time.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// command is one subcommand of the binary.
type command struct {
	name string
	// synopsis follows the binary's name in the usage: the command, its flags and arguments.
	synopsis string
	// doc says what the command does, in a few lines of the usage.
	doc string
	// args: the command takes positional arguments after its flags (else they are refused).
	args bool
	// build declares the command's flags on fs and returns its action, which runs once the
	// arguments are parsed (a command that takes positional arguments reads them from fs).
	build func(fs *flag.FlagSet) action
}

// action runs a command; it returns the exit status.
type action func(ctx context.Context, stdout, stderr io.Writer) int

// commands is the table of commands, in the order the usage lists them. To add one, add an entry
// and its builder below.
var commands = []command{
	{name: "run", synopsis: "run [--config FILE]",
		doc:   "run the daemon (default config: the embedded configs/default.yaml)",
		build: runCommand},
	{name: "demo", synopsis: "demo [--vendor genesys|zoom|cec] [--end transferred|closed] [--verbose]",
		doc: "run the daemon on embedded defaults (embedded NATS, built-in vendor stand-ins) with a\n" +
			"scripted conversation; --verbose prints every subject and raw payload that crosses NATS",
		build: demoCommand},
	{name: "sandbox", synopsis: "sandbox [--vendor all|genesys,zoom,cec] [--nats-port N] [--public-port N] [--control-port N]",
		doc: "serve an embedded NATS and the vendors' stand-ins on loopback, and print the `run`\n" +
			"command that uses them and commands to drive it; runs until SIGINT/SIGTERM",
		build: sandboxCommand},
	{name: "config", synopsis: "config [--config FILE] [--check]",
		doc: "check the config as run does and print it, secrets masked; --check: only check it (no\n" +
			"output when it is valid). A refused config exits 2 with every problem, as run does.",
		build: configCommand},
	{name: "cluster", synopsis: "cluster [--config FILE] status | add MEMBER... | remove MEMBER... | step-down MEMBER",
		doc: "show or change the replicas' consumer group on the NATS of the config (nats.url):\n" +
			"members and their partitions, as JSON",
		args: true, build: clusterCommand},
	{name: "health", synopsis: "health [--config FILE] [--url URL]",
		doc: "ask the running daemon's /readyz (on http.listen, or URL) and print the answer: exit 0\n" +
			"when ready, 1 when not (for exec probes and the image's HEALTHCHECK)",
		build: healthCommand},
	{name: "version", synopsis: "version",
		doc:   "print the version and the Go release it was built with",
		build: versionCommand},
}

const usageFooter = `
Every config key can be overridden from the environment: COBROWSE_<KEY PATH>, e.g. COBROWSE_NATS_URL.
A COBROWSE_ variable that names no key is refused (Kubernetes service links excepted).
'cobrowse-connector COMMAND -h' shows a command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage())
		return exitUsage
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		if len(args) > 1 {
			// `help CMD` is `CMD -h`; help about help is the usage.
			cmd, ok := lookup(args[1])
			switch {
			case ok:
				fs, _ := cmd.flags()
				cmd.printUsage(stdout, fs)
				return exitOK
			case !slices.Contains([]string{"help", "-h", "-help", "--help"}, args[1]):
				fmt.Fprintf(stderr, "cobrowse-connector: unknown command %q\n%s", args[1], usage())
				return exitUsage
			}
		}
		fmt.Fprint(stdout, usage())
		return exitOK
	}
	cmd, ok := lookup(args[0])
	if !ok {
		fmt.Fprintf(stderr, "cobrowse-connector: unknown command %q\n%s", args[0], usage())
		return exitUsage
	}
	fs, act := cmd.flags()
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			cmd.printUsage(stdout, fs)
			return exitOK
		}
		fmt.Fprintf(stderr, "cobrowse-connector %s: %v%s\n", cmd.name, err, otherCommandsHint(cmd, err))
		cmd.printUsage(stderr, fs)
		return exitUsage
	}
	if fs.NArg() > 0 && !cmd.args {
		fmt.Fprintf(stderr, "cobrowse-connector %s: unexpected arguments %q\n", cmd.name, fs.Args())
		cmd.printUsage(stderr, fs)
		return exitUsage
	}
	return act(ctx, stdout, stderr)
}

func lookup(name string) (command, bool) {
	i := slices.IndexFunc(commands, func(c command) bool { return c.name == name })
	if i < 0 {
		return command{}, false
	}
	return commands[i], true
}

// flags builds the command's FlagSet: errors are printed by run, not by the flag package.
func (c command) flags() (*flag.FlagSet, action) {
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs, c.build(fs)
}

// printUsage prints the command's synopsis, what it does and its flags.
func (c command) printUsage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintf(w, "usage: cobrowse-connector %s\n\n%s\n", c.synopsis, c.doc)
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		fmt.Fprintln(w, "\nflags:")
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
}

// usage is the top-level usage: every command of the table.
func usage() string {
	var b strings.Builder
	b.WriteString("usage:\n")
	for _, c := range commands {
		fmt.Fprintf(&b, "  cobrowse-connector %s\n", c.synopsis)
		for line := range strings.Lines(c.doc) {
			fmt.Fprintf(&b, "      %s", line)
		}
		b.WriteString("\n")
	}
	b.WriteString(usageFooter)
	return b.String()
}

// otherCommandsHint names the commands that have a flag this command refused as undefined.
func otherCommandsHint(cmd command, err error) string {
	name, ok := strings.CutPrefix(err.Error(), "flag provided but not defined: -")
	if !ok {
		return ""
	}
	name = strings.TrimPrefix(name, "-")
	var owners []string
	for _, c := range commands {
		if c.name == cmd.name {
			continue
		}
		if fs, _ := c.flags(); fs.Lookup(name) != nil {
			owners = append(owners, c.name)
		}
	}
	if len(owners) == 0 {
		return ""
	}
	return fmt.Sprintf(" (--%s is a flag of %s, not of %s)", name, strings.Join(owners, ", "), cmd.name)
}

func configFlag(fs *flag.FlagSet) *string {
	return fs.String("config", "", "YAML config `FILE` (default: the embedded default config)")
}

func runCommand(fs *flag.FlagSet) action {
	configPath := configFlag(fs)
	return func(ctx context.Context, _, stderr io.Writer) int {
		cfg, err := loadConfig(*configPath)
		if err != nil {
			fmt.Fprintf(stderr, "cobrowse-connector: refusing to start: %v\n", err)
			return exitUsage
		}
		if err := daemon.Run(ctx, cfg, daemon.Options{ConfigPath: *configPath, SIGHUP: true, OwnsProcess: true}); err != nil && !errors.Is(err, context.Canceled) {
			fmt.Fprintf(stderr, "cobrowse-connector: %v\n", err)
			return exitFailure
		}
		return exitOK
	}
}

func demoCommand(fs *flag.FlagSet) action {
	vendor := fs.String("vendor", "genesys", "the co-browse vendor it plays: genesys, zoom or cec")
	end := fs.String("end", "transferred", "how the interaction ends: transferred or closed")
	verbose := fs.Bool("verbose", false, "print every subject and raw JSON payload that crosses NATS, in order")
	return func(ctx context.Context, stdout, stderr io.Writer) int {
		opts := daemon.DemoOptions{Vendor: *vendor, End: *end, Verbose: *verbose, Pace: 700 * time.Millisecond}
		if err := opts.Check(); err != nil {
			fmt.Fprintf(stderr, "cobrowse-connector demo: %v\n", err)
			return exitUsage
		}
		if err := daemon.Demo(ctx, stdout, opts); err != nil {
			fmt.Fprintf(stderr, "cobrowse-connector demo: %v\n", err)
			return exitFailure
		}
		return exitOK
	}
}

func sandboxCommand(fs *flag.FlagSet) action {
	vendor := fs.String("vendor", "all", "the vendors' stand-ins to serve: all, or a comma-separated list of genesys, zoom, cec")
	natsPort := fs.Int("nats-port", 0, "the embedded NATS server's port on 127.0.0.1 (0: a free one)")
	publicPort := fs.Int("public-port", 0, "the port on 127.0.0.1 the printed command gives the daemon's public listener, where Zoom's webhooks are sent (0: a free one)")
	controlPort := fs.Int("control-port", 0, "the port on 127.0.0.1 of the sandbox's own endpoints that play the customer's and the agent's pages (0: a free one)")
	return func(ctx context.Context, stdout, stderr io.Writer) int {
		vendors, err := daemon.ParseSandboxVendors(*vendor)
		if err != nil {
			fmt.Fprintf(stderr, "cobrowse-connector sandbox: --vendor: %v\n", err)
			return exitUsage
		}
		opts := daemon.SandboxOptions{Vendors: vendors, NATSPort: *natsPort, PublicPort: *publicPort, ControlPort: *controlPort}
		if err := daemon.Sandbox(ctx, stdout, opts); err != nil {
			fmt.Fprintf(stderr, "cobrowse-connector sandbox: %v\n", err)
			return exitFailure
		}
		return exitOK
	}
}

func configCommand(fs *flag.FlagSet) action {
	configPath := configFlag(fs)
	check := fs.Bool("check", false, "only check the config, print nothing when it is valid")
	return func(_ context.Context, stdout, stderr io.Writer) int {
		cfg, err := loadConfig(*configPath)
		if err != nil {
			fmt.Fprintf(stderr, "cobrowse-connector: %v\n", err)
			return exitUsage
		}
		if !*check {
			fmt.Fprint(stdout, cfg.String())
		}
		return exitOK
	}
}

func clusterCommand(fs *flag.FlagSet) action {
	configPath := configFlag(fs)
	return func(ctx context.Context, stdout, stderr io.Writer) int {
		if fs.NArg() == 0 {
			fmt.Fprintf(stderr, "cobrowse-connector cluster: name an action: status, add, remove or step-down\n")
			return exitUsage
		}
		// Flags go before the action: after it, "--config" would be taken for a member's name.
		if i := slices.IndexFunc(fs.Args(), func(a string) bool { return strings.HasPrefix(a, "-") }); i >= 0 {
			fmt.Fprintf(stderr, "cobrowse-connector cluster: %q after the action: flags go before it (cluster --config FILE %s ...)\n", fs.Arg(i), fs.Arg(0))
			return exitUsage
		}
		cfg, err := loadConfig(*configPath)
		if err != nil {
			fmt.Fprintf(stderr, "cobrowse-connector: %v\n", err)
			return exitUsage
		}
		if err := daemon.ClusterCommand(ctx, cfg, fs.Arg(0), fs.Args()[1:], stdout); err != nil {
			fmt.Fprintf(stderr, "cobrowse-connector cluster: %v\n", err)
			return exitFailure
		}
		return exitOK
	}
}

func healthCommand(fs *flag.FlagSet) action {
	configPath := configFlag(fs)
	url := fs.String("url", "", "the readiness `URL` to ask (default: /readyz on http.listen)")
	return func(ctx context.Context, stdout, stderr io.Writer) int {
		// Every failure exits 1: Docker reserves 2 in a HEALTHCHECK.
		u := *url
		if u == "" {
			// Only http.listen is needed: the probe must not fail while a certificate or a
			// credentials file that run reads at start is being replaced.
			cfg, err := configs.Load(*configPath)
			if err == nil {
				u, err = daemon.ReadyURL(cfg.HTTP.Listen)
			}
			if err != nil {
				fmt.Fprintf(stderr, "cobrowse-connector health: %v\n", err)
				return exitFailure
			}
		}
		return daemon.Health(ctx, u, stdout, stderr)
	}
}

func versionCommand(*flag.FlagSet) action {
	return func(_ context.Context, stdout, _ io.Writer) int {
		fmt.Fprintf(stdout, "cobrowse-connector %s (go %s)\n", daemon.BuildVersion(), daemon.GoVersion())
		return exitOK
	}
}

// loadConfig loads the config as `run` needs it (daemon.LoadRunConfig): every command that reads
// a config accepts exactly what `run` accepts.
func loadConfig(path string) (configs.Config, error) { return daemon.LoadRunConfig(path) }
