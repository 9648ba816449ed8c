// Command profiled runs the daemon as `cobrowse-connector run --config FILE` does (configs.Load,
// ValidateRun, daemon.Run), with Go's profiles written to files: the daemon serves no pprof, and
// the load harness's -profile-daemon needs to see where its time and memory go. It is a
// diagnostic stand-in, built by the harness only when asked; the figures of a normal run come
// from the real binary.
//
//	LOAD_CPU_PROFILE=FILE   a CPU profile of the run up to the first SIGUSR1 (or exit); then one
//	                        from each SIGUSR1 to the next (or exit) into FILE.usr1-<n>, so that
//	                        the live measurement's idle window (from N live to the close) has one
//	LOAD_HEAP_PROFILE=FILE  on SIGUSR1: a heap profile into FILE.<n> (n = 1, 2, ...), the goroutines
//	                        grouped by stack into FILE.<n>.goroutines.txt, and a JSON line on stderr
//	                        with the goroutine count: {"msg":"profiled: heap written",...}; at
//	                        exit one more into FILE.exit, whose alloc_space covers the whole run
//	                        (what an ingestion drain allocated, for one)
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strconv"
	"syscall"

	"github.com/cobrowse-connector/cobrowse-connector/cmd/cobrowse-connector/daemon"
	"github.com/cobrowse-connector/cobrowse-connector/configs"
)

func main() { os.Exit(run()) }

func run() int {
	if len(os.Args) < 2 || os.Args[1] != "run" {
		fmt.Fprintln(os.Stderr, "usage: profiled run --config FILE")
		return 2
	}
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	path := fs.String("config", "", "YAML config file")
	if err := fs.Parse(os.Args[2:]); err != nil {
		return 2
	}
	cfg, err := configs.Load(*path)
	if err == nil {
		err = cfg.ValidateRun()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "profiled: refusing to start: %v\n", err)
		return 2
	}
	cpuBase := os.Getenv("LOAD_CPU_PROFILE")
	var cpuFile *os.File
	startCPU := func(p string) error {
		f, err := os.Create(p)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			_ = f.Close()
			return err
		}
		cpuFile = f
		return nil
	}
	stopCPU := func() {
		if cpuFile != nil {
			pprof.StopCPUProfile()
			_ = cpuFile.Close()
			cpuFile = nil
		}
	}
	if cpuBase != "" {
		if err := startCPU(cpuBase); err != nil {
			fmt.Fprintf(os.Stderr, "profiled: %v\n", err)
			return 1
		}
		defer stopCPU()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)
	dumped := make(chan struct{})
	go func() { // ends with ctx: the daemon's run
		defer close(dumped)
		n := 0
		for {
			select {
			case <-ctx.Done():
				return
			case <-usr1:
				n++
				heap(os.Getenv("LOAD_HEAP_PROFILE"), strconv.Itoa(n))
				if cpuBase != "" {
					stopCPU()
					if err := startCPU(fmt.Sprintf("%s.usr1-%d", cpuBase, n)); err != nil {
						fmt.Fprintf(os.Stderr, "profiled: %v\n", err)
					}
				}
			}
		}
	}()
	// OwnsProcess as `run` sets it: the heap headroom applies.
	err = daemon.Run(ctx, cfg, daemon.Options{OwnsProcess: true})
	stop()
	<-dumped
	heap(os.Getenv("LOAD_HEAP_PROFILE"), "exit")
	if err != nil && ctx.Err() == nil {
		fmt.Fprintf(os.Stderr, "profiled: %v\n", err)
		return 1
	}
	return 0
}

// heap writes a heap profile (no GC forced: the in-use figures are as of the last GC) and says
// how many goroutines run.
func heap(base, suffix string) {
	line := map[string]any{"level": "INFO", "msg": "profiled: heap written", "goroutines": runtime.NumGoroutine()}
	if base != "" {
		p := base + "." + suffix
		f, err := os.Create(p)
		if err == nil {
			err = pprof.Lookup("heap").WriteTo(f, 0)
			_ = f.Close()
		}
		if err == nil { // and the goroutines, grouped by stack
			var g *os.File
			if g, err = os.Create(p + ".goroutines.txt"); err == nil {
				err = pprof.Lookup("goroutine").WriteTo(g, 1)
				_ = g.Close()
			}
		}
		line["file"] = p
		if err != nil {
			line["error"] = err.Error()
		}
	}
	b, _ := json.Marshal(line)
	fmt.Fprintln(os.Stderr, string(b))
}
