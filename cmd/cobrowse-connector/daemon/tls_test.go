package daemon

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/cobrowse-connector/cobrowse-connector/configs"
	"github.com/cobrowse-connector/cobrowse-connector/connector"
	"github.com/cobrowse-connector/cobrowse-connector/connector/cec/cectest"
	"github.com/cobrowse-connector/cobrowse-connector/connector/gcb/gcbtest"
	"github.com/cobrowse-connector/cobrowse-connector/connector/zoom"
	"github.com/cobrowse-connector/cobrowse-connector/connector/zoom/zoomtest"
	"github.com/cobrowse-connector/cobrowse-connector/test/natstest"
)

// pki is a private CA made for one test (public_test.go's testCA) and the files it writes.
type pki struct {
	t      *testing.T
	ca     *testCA
	dir    string
	file   string // the CA certificate, PEM
	serial int64
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p := &pki{t: t, ca: newTestCA(t), dir: t.TempDir(), serial: 1}
	p.file = p.write("ca.pem", p.ca.pem)
	return p
}

func (p *pki) write(name string, b []byte) string {
	p.t.Helper()
	return writeFile(p.t, p.dir, name, b)
}

// issue makes a certificate signed by the CA: for the server 127.0.0.1, or for a client. It
// returns it for a tls.Config and as the files of its certificate and key.
func (p *pki) issue(name string, server bool) (tls.Certificate, string, string) {
	p.t.Helper()
	p.serial++
	certPEM, keyPEM := p.ca.issue(p.t, p.serial, server)
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		p.t.Fatal(err)
	}
	return pair, p.write(name+".pem", certPEM), p.write(name+"-key.pem", keyPEM)
}

func (p *pki) pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.ca.cert)
	return pool
}

// natsOnlyConfig is a config the daemon runs with on natsURL: Genesys named (run needs a vendor)
// but never called, NATS given a short connect_wait so that a refused connection ends the run.
func natsOnlyConfig(natsURL string) configs.Config {
	cfg := configs.Default()
	cfg.NATS.URL = natsURL
	cfg.NATS.ConnectWait = configs.Duration{Duration: time.Second}
	cfg.Genesys.URL = "http://127.0.0.1:1/cobrowse"
	cfg.HTTP.Listen = ""
	cfg.ShutdownTimeout = configs.Duration{Duration: 5 * time.Second}
	return cfg
}

// startDaemon runs the daemon on cfg with opts (its Ready is the helper's) until the test ends,
// and returns once it consumes, with the NATS URL it uses and a channel closed when it stops. The
// test's cleanup stops it and reports the error it stopped with.
func startDaemon(t *testing.T, cfg configs.Config, opts Options) (natsURL string, stopped <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	ready := make(chan string, 1)
	opts.Ready = func(u string) { ready <- u }
	finished := make(chan error) // closed, never sent on: ready for a receive once the daemon stopped
	var runErr error
	go func() {
		defer close(finished)
		runErr = Run(ctx, cfg, opts)
	}()
	t.Cleanup(func() {
		cancel()
		<-finished
		if runErr != nil {
			t.Errorf("daemon: %v", runErr)
		}
	})
	select {
	case u := <-ready:
		return u, finished
	case <-finished:
		t.Fatal("the daemon stopped before it was ready")
	case <-time.After(30 * time.Second):
		t.Fatal("daemon not ready")
	}
	return "", finished
}

// runUntilReady runs the daemon on cfg: nil once it consumes (then it is stopped), else the error
// it stopped with.
func runUntilReady(t *testing.T, cfg configs.Config) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, cfg, Options{Logger: slog.New(slog.DiscardHandler), Ready: func(string) { close(ready) }})
	}()
	select {
	case <-ready:
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("daemon stopped with %v", err)
		}
		return nil
	case err := <-done:
		if err == nil {
			t.Fatal("the daemon stopped without an error before it was ready")
		}
		return err
	}
}

// TestNATSTLS: with nats.tls.ca_file, cert_file and key_file the daemon (and the cluster command)
// connects to a NATS server that requires TLS and verifies its clients; without the CA, or
// without the client certificate, the connection is refused with the TLS error; a CA file that
// is missing or holds no certificate is refused at start, naming the key.
func TestNATSTLS(t *testing.T) {
	ca := newPKI(t)
	serverCert, _, _ := ca.issue("nats-server", true)
	_, clientCert, clientKey := ca.issue("cobrowse-connector", false)
	ns := natstest.StartWith(t, func(o *server.Options) {
		o.TLS, o.TLSVerify, o.TLSTimeout = true, true, 5
		o.TLSConfig = &tls.Config{Certificates: []tls.Certificate{serverCert}, ClientCAs: ca.pool(),
			ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}
	})
	base := natsOnlyConfig(ns.ClientURL())

	t.Run("the three files", func(t *testing.T) {
		cfg := base
		cfg.NATS.TLS = configs.NATSTLSConfig{CAFile: ca.file, CertFile: clientCert, KeyFile: clientKey}
		if err := runUntilReady(t, cfg); err != nil {
			t.Fatalf("daemon: %v", err)
		}
		// The cluster command dials the same way.
		var out bytes.Buffer
		if err := ClusterCommand(t.Context(), cfg, ClusterStatus, nil, &out); err != nil || !strings.Contains(out.String(), `"members"`) {
			t.Fatalf("cluster status over TLS: %v\n%s", err, out.String())
		}
	})
	for _, tc := range []struct {
		name     string
		tls      configs.NATSTLSConfig
		want     string
		retrying bool // refused by the server (after nats.connect_wait), not at start
	}{
		{"no CA", configs.NATSTLSConfig{CertFile: clientCert, KeyFile: clientKey}, "certificate signed by unknown authority", true},
		// TLS 1.3 sends the server's refusal of a client without a certificate after the
		// handshake: the client reads "certificate required", or finds the connection closed
		// when it writes first ("tls error: connection closed by remote after TLS handshake").
		{"no client certificate", configs.NATSTLSConfig{CAFile: ca.file}, "tls", true},
		{"CA file missing", configs.NATSTLSConfig{CAFile: filepath.Join(ca.dir, "nothing.pem")}, "nats.tls.ca_file: open ", false},
		{"CA file not PEM", configs.NATSTLSConfig{CAFile: ca.write("garbage.pem", []byte("not a certificate\n"))}, "nats.tls.ca_file: " + filepath.Join(ca.dir, "garbage.pem") + " holds no PEM certificate", false},
		{"key file missing", configs.NATSTLSConfig{CAFile: ca.file, CertFile: clientCert, KeyFile: filepath.Join(ca.dir, "nothing-key.pem")}, "nats.tls.cert_file, nats.tls.key_file: open ", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			cfg.NATS.TLS = tc.tls
			err := runUntilReady(t, cfg)
			if !tlsRefusal(err, tc.want) || strings.Contains(err.Error(), "nats.connect_wait") != tc.retrying {
				t.Fatalf("error %q, want %q (retried: %v)", err, tc.want, tc.retrying)
			}
			if !tc.retrying {
				cerr := ClusterCommand(t.Context(), cfg, ClusterStatus, nil, &bytes.Buffer{})
				if cerr == nil || !strings.Contains(cerr.Error(), tc.want) {
					t.Fatalf("cluster command: %v, want %q", cerr, tc.want)
				}
			}
		})
	}
}

// TestNATSNKey: with nats.nkey_seed_file the daemon authenticates as the server's NKey user;
// without it, or with another user's seed, the server refuses it; a file that holds no seed is
// refused at start, naming the key.
func TestNATSNKey(t *testing.T) {
	user, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := user.PublicKey()
	seed, _ := user.Seed()
	other, _ := nkeys.CreateUser()
	otherSeed, _ := other.Seed()
	ns := natstest.StartWith(t, func(o *server.Options) { o.Nkeys = []*server.NkeyUser{{Nkey: pub}} })
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	base := natsOnlyConfig(ns.ClientURL())

	cfg := base
	cfg.NATS.NKeySeedFile = write("user.nk", seed)
	if err := runUntilReady(t, cfg); err != nil {
		t.Fatalf("with the seed: %v", err)
	}
	for _, tc := range []struct {
		name, file, want string
	}{
		{"no seed", "", "authorization violation"},
		{"another user's seed", write("other.nk", otherSeed), "authorization violation"},
		{"not a seed", write("garbage.nk", []byte("SUnot-a-seed\n")), "nats.nkey_seed_file: "},
		{"missing", filepath.Join(dir, "nothing.nk"), "nats.nkey_seed_file: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			cfg.NATS.NKeySeedFile = tc.file
			if err := runUntilReady(t, cfg); !strings.Contains(strings.ToLower(err.Error()), tc.want) {
				t.Fatalf("error %q, want %q", err, tc.want)
			}
		})
	}
}

// tlsProxy serves target over TLS with cert, as a vendor behind a private CA: REST, long-polling
// and websocket upgrades pass through.
func tlsProxy(t *testing.T, target string, cert tls.Certificate) string {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	// Refused handshakes and requests cut off at a session's close are the point: not logged.
	quiet := slog.NewLogLogger(slog.DiscardHandler, slog.LevelError)
	rp := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(u) }, ErrorLog: quiet}
	hs := httptest.NewUnstartedServer(rp)
	hs.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	hs.Config.ErrorLog = quiet
	hs.StartTLS()
	t.Cleanup(hs.Close)
	return hs.URL
}

// TestVendorCAFiles: each vendor served over HTTPS by a private CA is reached with its ca_file
// (Genesys' REST and CometD over both transports, Zoom's OAuth and REST, CEC's API Fabric), and
// refused with the TLS error without it; a ca_file that holds no certificate is refused at start,
// naming the key.
func TestVendorCAFiles(t *testing.T) {
	ca := newPKI(t)
	serverCert, _, _ := ca.issue("vendor", true)
	log := slog.New(slog.DiscardHandler)
	const unknownCA = "certificate signed by unknown authority"

	cluster := gcbtest.NewCluster(gcbtest.Options{Nodes: 2, ConnectTimeout: time.Second})
	t.Cleanup(cluster.Close)
	front, _ := url.Parse(cluster.URL())
	gcbURL := tlsProxy(t, "http://"+front.Host, serverCert) + front.Path

	z := zoomtest.New(zoomtest.Options{})
	t.Cleanup(z.Close)
	zoomURL := tlsProxy(t, z.URL(), serverCert)

	c := cectest.New(cectest.Options{})
	t.Cleanup(c.Close)
	cecURL := tlsProxy(t, c.URL(), serverCert)

	// join joins one session of the vendor with the config's connectors; it returns Join's error.
	join := func(t *testing.T, cfg configs.Config, vendor connector.Vendor) error {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		vs, err := newVendors(cfg, log)
		if err != nil {
			t.Fatalf("vendors: %v", err)
		}
		defer vs.close()
		trigger := connector.Trigger{InteractionID: "i-" + strings.ToLower(rand.Text()[:8]), AgentID: "agent-7"}
		switch vendor {
		case connector.Genesys:
			s, err := cluster.CreateSession(0)
			if err != nil {
				t.Fatal(err)
			}
			trigger.Token = s.Token()
		case connector.Zoom:
			tok, err := vs.zoomMinter.Mint(zoom.CustomerTokenRequest(trigger.InteractionID))
			if err != nil {
				t.Fatal(err)
			}
			s, err := z.CustomerStart(tok.JWT, "")
			if err != nil {
				t.Fatal(err)
			}
			trigger.Token = s.PIN
		}
		s, err := vs.conns[0].Join(ctx, trigger)
		if err != nil {
			return err
		}
		if _, err := s.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
		return s.Close(ctx)
	}
	genesys := func(caFile string, transports ...string) configs.Config {
		cfg := configs.Default()
		cfg.Genesys.URL, cfg.Genesys.CAFile = gcbURL, caFile
		if len(transports) > 0 {
			cfg.Genesys.Transports = transports
		}
		return cfg
	}
	zoomCfg := func(caFile string) configs.Config {
		cfg := configs.Default()
		o := z.Options()
		cfg.Zoom.Enabled = true
		cfg.Zoom.SDKKey, cfg.Zoom.SDKSecret = o.SDKKey, configs.Secret(o.SDKSecret)
		cfg.Zoom.AccountID, cfg.Zoom.ClientID, cfg.Zoom.ClientSecret = o.AccountID, o.ClientID, configs.Secret(o.ClientSecret)
		cfg.Zoom.APIURL, cfg.Zoom.OAuthURL = zoomURL+"/v2", zoomURL
		cfg.Zoom.Webhook.Secret = configs.Secret(o.WebhookSecret)
		cfg.Zoom.CAFile = caFile
		return cfg
	}
	cecCfg := func(caFile string) configs.Config {
		cfg := configs.Default()
		o := c.Options()
		cfg.CEC.Enabled = true
		cfg.CEC.Domain, cfg.CEC.AppKey, cfg.CEC.AppSecret, cfg.CEC.TenantSpaceID = cecURL, o.AppKey, configs.Secret(o.AppSecret), o.TenantSpaceID
		cfg.CEC.CAFile = caFile
		return cfg
	}
	for _, tc := range []struct {
		name   string
		vendor connector.Vendor
		cfg    func(caFile string) configs.Config
	}{
		{"genesys websocket", connector.Genesys, func(f string) configs.Config { return genesys(f, "websocket") }},
		{"genesys long-polling", connector.Genesys, func(f string) configs.Config { return genesys(f, "long-polling") }},
		{"zoom", connector.Zoom, zoomCfg},
		{"cec", connector.CEC, cecCfg},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := join(t, tc.cfg(ca.file), tc.vendor); err != nil {
				t.Fatalf("with the CA file: %v", err)
			}
			if err := join(t, tc.cfg(""), tc.vendor); err == nil || !strings.Contains(err.Error(), unknownCA) {
				t.Fatalf("without the CA file: %v, want %q", err, unknownCA)
			}
		})
	}

	// A CA file that is missing or holds no certificate: refused at start, naming the key.
	garbage := ca.write("garbage.pem", []byte("-----BEGIN NOTHING-----\n"))
	for key, cfg := range map[string]configs.Config{
		"genesys.ca_file": genesys(garbage),
		"zoom.ca_file":    zoomCfg(filepath.Join(ca.dir, "nothing.pem")),
		"cec.ca_file":     cecCfg(garbage),
	} {
		cfg.NATS.URL = "nats://127.0.0.1:1" // never dialled: the files are checked first
		if key == "zoom.ca_file" {
			cfg.HTTP.PublicListen = "127.0.0.1:0"
			cfg.Zoom.TokenEndpoint.BearerSecret = "bearer-secret"
		}
		cfg.HTTP.Listen = ""
		err := Run(t.Context(), cfg, Options{Logger: log})
		if err == nil || !strings.HasPrefix(err.Error(), key+": ") {
			t.Errorf("%s: Run: %v", key, err)
		}
		if _, err := newVendors(cfg, log); err == nil || !strings.Contains(err.Error(), key+": ") {
			t.Errorf("%s: newVendors: %v", key, err)
		}
	}
}

// tlsRefusal reports whether err says want; "tls" stands for a refused client certificate, which
// reads one of two ways (see its case).
func tlsRefusal(err error, want string) bool {
	if want != "tls" {
		return strings.Contains(err.Error(), want)
	}
	return strings.Contains(err.Error(), "tls: certificate required") ||
		strings.Contains(err.Error(), "tls error: connection closed by remote after TLS handshake")
}
