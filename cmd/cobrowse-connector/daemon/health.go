package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"
)

// healthTimeout bounds the health command's request: an exec probe or a Docker HEALTHCHECK has a
// time-out of its own, and a daemon that cannot answer this fast is not healthy.
const healthTimeout = 3 * time.Second

// maxHealthAnswer bounds what the health command reads of the answer.
const maxHealthAnswer = 64 << 10

// ReadyURL is the URL of the readiness report (/readyz?verbose) on the internal listener at listen
// (http.listen). A host the listener binds for every interface ("", 0.0.0.0, ::) is asked on
// 127.0.0.1.
func ReadyURL(listen string) (string, error) {
	if listen == "" {
		return "", errors.New("http.listen is empty: the daemon has no internal listener to ask (set it, or give --url)")
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("http.listen: %w", err)
	}
	if port == "0" {
		return "", errors.New("http.listen asks for any free port: its port is not known here (give --url)")
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	u := (&url.URL{Scheme: "http", Host: net.JoinHostPort(host, port), Path: ReadinessPath, RawQuery: "verbose"}).String()
	if _, err := url.Parse(u); err != nil {
		return "", fmt.Errorf("http.listen: %q makes no URL: %w", listen, err)
	}
	return u, nil
}

// Health asks the daemon's readiness endpoint at rawURL (http or https; ReadyURL makes it from
// http.listen) and writes the answer to stdout. It returns 0 when the daemon is ready (200) and 1
// otherwise, with the reason on stderr: the exit status of an exec probe or a Docker HEALTHCHECK
// (which reserves 2).
func Health(ctx context.Context, rawURL string, stdout, stderr io.Writer) int {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		fmt.Fprintf(stderr, "cobrowse-connector health: %q is not an http or https URL\n", rawURL)
		return 1
	}
	ctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		fmt.Fprintf(stderr, "cobrowse-connector health: %v\n", err)
		return 1
	}
	// The probe talks to its own pod: never through a proxy of the environment.
	tr := &http.Transport{Proxy: nil, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "cobrowse-connector health: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	_, _ = io.Copy(stdout, io.LimitReader(resp.Body, maxHealthAnswer))
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "cobrowse-connector health: not ready (%s)\n", resp.Status)
		return 1
	}
	return 0
}
