package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cobrowse-connector/cobrowse-connector/configs"
	"github.com/cobrowse-connector/cobrowse-connector/connector"
	"github.com/cobrowse-connector/cobrowse-connector/connector/zoom"
	"github.com/cobrowse-connector/cobrowse-connector/controller"
)

// publicServer is the public listener of the vendor endpoints: Zoom's webhook intake and its
// token endpoint. Its handlers decide nothing of the interactions: the intake makes a verified
// delivery durable in NATS before it answers 200, and the token endpoint reads the state bucket.
type publicServer struct {
	srv    *http.Server
	ln     net.Listener
	tokens *zoom.TokenEndpoint // a reload rotates its bearer secrets
	log    *slog.Logger
}

// errNoPublicListener is returned when a vendor that receives HTTP is enabled without the
// public listener (configs refuses that first; this guards a caller that skipped it).
var errNoPublicListener = errors.New("http.public_listen is required by the enabled vendors")

// publicShutdownBound bounds the public listener's graceful shutdown.
const publicShutdownBound = 5 * time.Second

// maxOtherBody bounds the body of a request to a path no endpoint serves.
const maxOtherBody = 1 << 10

// newPublicServer listens on http.public_listen (so that a port in use fails the start) and
// builds the handlers. Nil when no vendor needs it.
func newPublicServer(cfg configs.Config, v *vendors, js jetstream.JetStream, store controller.Store, log *slog.Logger) (*publicServer, error) {
	if v.zoom == nil {
		return nil, nil
	}
	h := cfg.HTTP
	if h.PublicListen == "" {
		return nil, errNoPublicListener
	}
	l := log.With("component", "public")
	z := cfg.Zoom
	mux := http.NewServeMux()
	mux.Handle(z.Webhook.Path, &zoom.Intake{Webhook: v.zoomWebhook, Sink: webhookSink(js, cfg.NATS.Prefix, string(connector.Zoom)), Logger: log})
	var bearers []zoom.Secret
	for _, s := range []configs.Secret{z.TokenEndpoint.BearerSecret, z.TokenEndpoint.PreviousBearerSecret} {
		if s != "" {
			bearers = append(bearers, zoom.Secret(s.Reveal()))
		}
	}
	tokens, err := zoom.NewTokenEndpoint(zoom.TokenEndpointConfig{
		Minter:           v.zoomMinter,
		BearerSecrets:    bearers,
		AcceptClientCert: z.TokenEndpoint.ClientCert,
		Lookup:           tokenLookup(store, connector.Vendor(cfg.DefaultVendor())),
		Logger:           log,
	})
	if err != nil {
		return nil, fmt.Errorf("zoom token endpoint: %w", err)
	}
	mux.Handle(z.TokenEndpoint.Path, tokens)
	mux.Handle("/", http.MaxBytesHandler(http.NotFoundHandler(), maxOtherBody))

	srv := newHTTPServer(h, mux, l)
	if h.PublicTLS.CertFile != "" {
		if srv.TLSConfig, err = serverTLS(h.PublicTLS); err != nil {
			return nil, err
		}
	}
	ln, err := net.Listen("tcp", h.PublicListen)
	if err != nil {
		return nil, fmt.Errorf("http.public_listen: %w", err)
	}
	if srv.TLSConfig != nil {
		ln = tls.NewListener(ln, srv.TLSConfig)
	}
	return &publicServer{srv: srv, ln: ln, tokens: tokens, log: l}, nil
}

// newHTTPServer is a listener's server with the http section's time-outs and header limit, its
// errors logged at warn on l.
func newHTTPServer(h configs.HTTPConfig, handler http.Handler, l *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: h.ReadHeaderTimeout.D(),
		ReadTimeout:       h.ReadTimeout.D(),
		WriteTimeout:      h.WriteTimeout.D(),
		IdleTimeout:       h.IdleTimeout.D(),
		MaxHeaderBytes:    h.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(l.Handler(), slog.LevelWarn),
	}
}

// serverTLS loads the listener's certificate and, when configured, the CA of the client
// certificates it verifies (a client without one may still connect: the bearer secret
// authenticates it).
func serverTLS(c configs.TLSServerConfig) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("http.public_tls: %w", err)
	}
	t := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if c.ClientCAFile != "" {
		pool, err := caPool("http.public_tls.client_ca_file", c.ClientCAFile)
		if err != nil {
			return nil, err
		}
		t.ClientCAs, t.ClientAuth = pool, tls.VerifyClientCertIfGiven
	}
	return t, nil
}

// Addr is the address the listener listens on.
func (p *publicServer) Addr() string { return p.ln.Addr().String() }

// serve serves until shutdown; it returns nil after a shutdown.
func (p *publicServer) serve() error {
	p.log.Info("public listener serving", "addr", p.Addr(), "tls", p.srv.TLSConfig != nil)
	if err := p.srv.Serve(p.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// shutdown stops taking requests and lets those in flight finish, within publicShutdownBound.
func (p *publicServer) shutdown(ctx context.Context) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), publicShutdownBound)
	defer cancel()
	if err := p.srv.Shutdown(sctx); err != nil {
		p.log.Warn("public listener: requests still in flight at the shutdown bound; closed", "error", err)
		_ = p.srv.Close()
	}
}
