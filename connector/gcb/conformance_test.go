package gcb

import (
	"fmt"
	"testing"

	"github.com/cobrowse-connector/cobrowse-connector/connector"
	"github.com/cobrowse-connector/cobrowse-connector/connector/connectortest"
	"github.com/cobrowse-connector/cobrowse-connector/connector/gcb/gcbtest"
)

// TestConformance runs the vendor-neutral conformance suite against gcbtest, under both
// stickiness routes.
func TestConformance(t *testing.T) {
	for _, serverURL := range []bool{true, false} {
		t.Run(fmt.Sprintf("serverURL=%v", serverURL), func(t *testing.T) {
			e := newEnv(t, serverURL, "", nil)
			connectortest.Run(t, connectortest.Harness{
				Vendor:       connector.Genesys,
				New:          func(t *testing.T) connector.Connector { return newConnector(t, e.cfg) },
				NewSession:   func(t *testing.T, _ string) connectortest.Customer { return &gcbCustomer{gs: e.create(1)} },
				NotAToken:    "12345678a",
				UnknownToken: "000000000",
				Unreachable: func(t *testing.T) connector.Connector {
					cfg := e.cfg
					cfg.ClusterURL = "http://" + connectortest.ClosedAddr(t) + "/cobrowse"
					return newConnector(t, cfg)
				},
			})
		})
	}
}

// gcbCustomer plays the customer and the agent of one gcbtest session.
type gcbCustomer struct{ gs *gcbtest.Session }

func (c *gcbCustomer) Token() string { return c.gs.Token() }

func (c *gcbCustomer) AgentJoins(t *testing.T, _ connector.Session) {
	t.Helper()
	if err := c.gs.AgentJoin("agent-"+c.gs.Token(), "Alice"); err != nil {
		t.Fatalf("AgentJoin: %v", err)
	}
}

func (c *gcbCustomer) Leaves(t *testing.T) {
	t.Helper()
	if err := c.gs.CustomerExit(); err != nil {
		t.Fatalf("CustomerExit: %v", err)
	}
}

func (c *gcbCustomer) Ended(t *testing.T) bool {
	t.Helper()
	waitDone(t, c.gs)
	by := c.gs.EndedBy()
	return by == gcbtest.EndedByController || by == gcbtest.EndedByControllerREST
}

func (c *gcbCustomer) Live() bool { return c.gs.State() != gcbtest.StateEnded }
