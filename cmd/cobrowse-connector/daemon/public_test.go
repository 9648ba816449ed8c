package daemon

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cobrowse-connector/cobrowse-connector/configs"
	"github.com/cobrowse-connector/cobrowse-connector/connector/zoom/zoomtest"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue makes a certificate signed by the CA, for a server (127.0.0.1) or a client.
func (ca *testCA) issue(t *testing.T, serial int64, server bool) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "platform-backend"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func writeFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPublicListenerTLSAndClientCertificates: with http.public_tls the public listener serves TLS,
// and with zoom.token_endpoint.client_cert a client certificate signed by the configured CA
// authenticates a token request (the interaction is unknown: 404, past the authentication), while
// a request without one, or with one from another CA, is refused (401, or no TLS session at all).
func TestPublicListenerTLSAndClientCertificates(t *testing.T) {
	dir := t.TempDir()
	ca, other := newTestCA(t), newTestCA(t)
	srvCert, srvKey := ca.issue(t, 2, true)
	cliCert, cliKey := ca.issue(t, 3, false)
	strangerCert, strangerKey := other.issue(t, 4, false)

	z := zoomtest.New(zoomtest.Options{})
	defer z.Close()
	o := z.Options()
	cfg := configs.Default()
	cfg.NATS.Embedded.Enabled, cfg.NATS.Embedded.Port = true, -1
	cfg.HTTP.PublicListen = "127.0.0.1:0"
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.HTTP.PublicTLS = configs.TLSServerConfig{CertFile: writeFile(t, dir, "tls.crt", srvCert), KeyFile: writeFile(t, dir, "tls.key", srvKey),
		ClientCAFile: writeFile(t, dir, "ca.crt", ca.pem)}
	cfg.Zoom.Enabled = true
	cfg.Zoom.SDKKey, cfg.Zoom.SDKSecret = o.SDKKey, configs.Secret(o.SDKSecret)
	cfg.Zoom.AccountID, cfg.Zoom.ClientID, cfg.Zoom.ClientSecret = o.AccountID, o.ClientID, configs.Secret(o.ClientSecret)
	cfg.Zoom.APIURL, cfg.Zoom.OAuthURL = z.APIURL(), z.URL()
	cfg.Zoom.Webhook.Secret = "webhook-secret"
	cfg.Zoom.TokenEndpoint.ClientCert = true
	if err := cfg.ValidateRun(); err != nil {
		t.Fatal(err)
	}

	addr := make(chan string, 1)
	startDaemon(t, cfg, Options{Logger: slog.New(slog.DiscardHandler), PublicAddr: func(a string) { addr <- a }})
	url := "https://" + <-addr + "/zoom/token"

	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	call := func(certPEM, keyPEM []byte) (int, error) {
		tc := &tls.Config{RootCAs: roots}
		if certPEM != nil {
			pair, err := tls.X509KeyPair(certPEM, keyPEM)
			if err != nil {
				t.Fatal(err)
			}
			tc.Certificates = []tls.Certificate{pair}
		}
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 10 * time.Second}
		defer c.CloseIdleConnections()
		resp, err := c.Post(url, "application/json", bytes.NewReader([]byte(`{"interactionId":"i-1","role":"customer"}`)))
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	if st, err := call(cliCert, cliKey); err != nil || st != http.StatusNotFound {
		t.Fatalf("with the platform's client certificate: %d %v, want 404 (authenticated, unknown interaction)", st, err)
	}
	if st, err := call(nil, nil); err != nil || st != http.StatusUnauthorized {
		t.Fatalf("without a client certificate: %d %v, want 401", st, err)
	}
	if st, err := call(strangerCert, strangerKey); err == nil && st != http.StatusUnauthorized {
		t.Fatalf("with a certificate of another CA: %d, want refused", st)
	}
}
