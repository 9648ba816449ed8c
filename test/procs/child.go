package procs

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// ChildServer runs this test binary again, with env ("NAME=1") set, as a server for a benchmark
// that must not share its process (its memory is what the benchmark measures): the child serves
// until its standard input closes, which tb's cleanup does, and says on its first line of output
// where it listens. ChildServer returns that line's fields after the word LISTENING.
func ChildServer(tb testing.TB, env ...string) []string {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		stdin.Close()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	f := strings.Fields(line)
	if err != nil || len(f) < 2 || f[0] != "LISTENING" {
		tb.Fatalf("the benchmark's server said %q (%v)", line, err)
	}
	return f[1:]
}

// ServeChild is the child's side of ChildServer: it serves h on a loopback port, says
// "LISTENING" and what where(addr) gives (the addresses the parent needs), and returns once its
// standard input closes, the server shut. The caller closes the rest and exits.
func ServeChild(h http.Handler, where func(addr string) []string) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: h}
	go func() { _ = hs.Serve(ln) }() // ends with Close below
	fmt.Println("LISTENING " + strings.Join(where(ln.Addr().String()), " "))
	_, _ = io.Copy(io.Discard, os.Stdin)
	return hs.Close()
}
