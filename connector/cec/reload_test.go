package cec

import (
	"strings"
	"testing"

	"github.com/cobrowse-connector/cobrowse-connector/connector"
	"github.com/cobrowse-connector/cobrowse-connector/connector/cec/cectest"
)

// TestSetAppSecret: the app secret a reload gives is sent at the next access token request, and
// no error shows it.
func TestSetAppSecret(t *testing.T) {
	s := newCEC(t, cectest.Options{})
	cfg := config(s, false)
	cfg.AppSecret = "a-wrong-app-secret"
	c := newConnector(t, cfg)
	_, err := c.api.tokens.token(ctxFor(t))
	wantServerError(t, err, connector.ErrRefused, opToken)
	if strings.Contains(err.Error(), "a-wrong-app-secret") {
		t.Fatalf("the error shows the app secret: %v", err)
	}
	if err := c.SetAppSecret(" "); err == nil {
		t.Fatal("a blank app secret was accepted")
	}
	if err := c.SetAppSecret(Secret(s.Options().AppSecret)); err != nil {
		t.Fatal(err)
	}
	if tok, err := c.api.tokens.token(ctxFor(t)); err != nil || tok == "" {
		t.Fatalf("with the reloaded secret: %q %v", tok, err)
	}
	if strings.Contains(c.String(), s.Options().AppSecret) {
		t.Fatalf("String shows the app secret: %s", c.String())
	}
}
