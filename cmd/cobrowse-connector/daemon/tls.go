package daemon

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"github.com/nats-io/nats.go"

	"github.com/cobrowse-connector/cobrowse-connector/configs"
)

// The files the config names for TLS and authentication are read and checked once, at start,
// before anything connects: a missing or malformed file is refused naming its key, instead of
// failing every connection attempt (NATS's for nats.connect_wait) with a less clear error.

// caPool reads a PEM file of CA certificates, named by the config key key.
func caPool(key, file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: %s holds no PEM certificate", key, file)
	}
	return pool, nil
}

// vendorTLS is the TLS of a vendor's HTTPS (and wss) trusting the CAs of file instead of the
// system's; nil when file is empty.
func vendorTLS(key, file string) (*tls.Config, error) {
	if file == "" {
		return nil, nil
	}
	pool, err := caPool(key, file)
	if err != nil {
		return nil, err
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// natsOptions are the options of the NATS connection read from files: TLS (nats.tls.*), the NKey
// seed and the credentials file. Every problem is reported, each naming its key.
func natsOptions(cfg configs.NATSConfig) ([]nats.Option, error) {
	var opts []nats.Option
	var errs []error
	if t := cfg.TLS; t.CAFile != "" || t.CertFile != "" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if t.CAFile != "" {
			pool, err := caPool("nats.tls.ca_file", t.CAFile)
			errs = append(errs, err)
			tc.RootCAs = pool
		}
		if t.CertFile != "" {
			cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
			if err != nil {
				errs = append(errs, fmt.Errorf("nats.tls.cert_file, nats.tls.key_file: %w", err))
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		// Secure: the connection must be TLS, whatever the URL's scheme says.
		opts = append(opts, nats.Secure(tc))
	}
	if cfg.NKeySeedFile != "" {
		opt, err := nats.NkeyOptionFromSeed(cfg.NKeySeedFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("nats.nkey_seed_file: %w", err))
		}
		opts = append(opts, opt)
	}
	if cfg.CredentialsFile != "" {
		// nats.go reads the file at each connection; a missing one is refused here.
		if _, err := os.ReadFile(cfg.CredentialsFile); err != nil {
			errs = append(errs, fmt.Errorf("nats.credentials_file: %w", err))
		}
		opts = append(opts, nats.UserCredentials(cfg.CredentialsFile))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return opts, nil
}

// CheckFiles checks every file the config names for TLS and authentication: NATS's, the CA file
// of each enabled vendor, and the public listener's certificate, key and client CA. Run calls it
// first; `config --check` and a reload too.
func CheckFiles(cfg configs.Config) error {
	_, err := natsOptions(cfg.NATS)
	errs := []error{err}
	for _, v := range []struct {
		on        bool
		key, file string
	}{
		{cfg.Genesys.URL != "", "genesys.ca_file", cfg.Genesys.CAFile},
		{cfg.Zoom.Enabled, "zoom.ca_file", cfg.Zoom.CAFile},
		{cfg.CEC.Enabled, "cec.ca_file", cfg.CEC.CAFile},
	} {
		if v.on {
			_, err := vendorTLS(v.key, v.file)
			errs = append(errs, err)
		}
	}
	if cfg.HTTP.PublicListen != "" && cfg.HTTP.PublicTLS.CertFile != "" {
		_, err := serverTLS(cfg.HTTP.PublicTLS)
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
