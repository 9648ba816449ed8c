package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/cobrowse-connector/cobrowse-connector/chat"
	"github.com/cobrowse-connector/cobrowse-connector/configs"
)

// The cluster actions of `cobrowse-connector cluster` and of the micro endpoints.
const (
	ClusterStatus   = "status"
	ClusterAdd      = "add"
	ClusterRemove   = "remove"
	ClusterStepDown = "step-down"
)

// clusterActionWait bounds a cluster action of the command, once connected.
const clusterActionWait = time.Minute

// ClusterCommand runs one cluster action against the NATS of cfg (nats.url; the embedded server is
// not for this) and prints the group's status after it, as JSON.
func ClusterCommand(ctx context.Context, cfg configs.Config, action string, members []string, out io.Writer) error {
	if cfg.NATS.URL == "" {
		return errors.New("cluster: nats.url is required: the command works on the NATS the replicas use")
	}
	log := slog.New(slog.DiscardHandler)
	// The first connection waits as long as run's does (nats.connect_wait); the action has a bound
	// of its own, and each request in it a shorter one (chat.Group).
	nc, err := connectNATS(ctx, cfg.NATS.URL, cfg.NATS, log)
	if err != nil {
		return err
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(ctx, clusterActionWait)
	defer cancel()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	g, err := chat.OpenGroup(ctx, js, chatConfig(cfg, log))
	if err != nil {
		return err
	}
	st, err := clusterAction(ctx, g, action, members)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(st)
}

// clusterAction applies action and returns the status after it.
func clusterAction(ctx context.Context, g *chat.Group, action string, members []string) (chat.GroupStatus, error) {
	var err error
	switch action {
	case ClusterStatus:
		if len(members) > 0 {
			return chat.GroupStatus{}, fmt.Errorf("cluster status takes no member (got %s)", strings.Join(members, " "))
		}
	case ClusterAdd:
		err = g.Add(ctx, members...)
	case ClusterRemove:
		err = g.Remove(ctx, members...)
	case ClusterStepDown:
		if len(members) != 1 {
			return chat.GroupStatus{}, errors.New("cluster step-down takes one member")
		}
		err = g.StepDown(ctx, members[0])
	default:
		return chat.GroupStatus{}, fmt.Errorf("unknown cluster action %q: want status, add, remove or step-down", action)
	}
	if err != nil {
		return chat.GroupStatus{}, err
	}
	return g.Status(ctx)
}

// ServiceName is the daemon's NATS micro service: every replica registers it ($SRV.PING, INFO and
// STATS answer per replica), and one replica of the queue group answers each endpoint request.
const ServiceName = "cobrowse-connector"

// serviceSubject is the subject prefix of the service's endpoints: cobrowse.cluster.status, ...
const serviceSubject = "cobrowse"

// clusterRequest is the body of a cluster endpoint request.
type clusterRequest struct {
	Members []string `json:"members"`
}

// decodeClusterRequest reads a cluster endpoint's body: none for status, {"members": [...]} for
// the others (at most 64 members, checked by the group).
func decodeClusterRequest(action string, b []byte) ([]string, error) {
	if action == ClusterStatus {
		return nil, nil
	}
	var body clusterRequest
	if err := json.Unmarshal(b, &body); err != nil || len(body.Members) == 0 || len(body.Members) > 64 {
		return nil, errors.New(`the body must be {"members": ["name", ...]} with 1 to 64 members`)
	}
	return body.Members, nil
}

// startService registers the micro service with the cluster endpoints. Membership changes are
// authorised by NATS permissions on the endpoint subjects (docs/replicas.md).
func startService(nc *nats.Conn, open func(context.Context) (*chat.Group, error), member string, log *slog.Logger) (micro.Service, error) {
	svc, err := micro.AddService(nc, micro.Config{
		Name:        ServiceName,
		Version:     serviceVersion(BuildVersion()),
		Description: "co-browse sidecar: the consumer group's membership",
		Metadata:    map[string]string{"member": member, "build": BuildVersion()},
	})
	if err != nil {
		return nil, fmt.Errorf("micro service: %w", err)
	}
	cluster := svc.AddGroup(serviceSubject).AddGroup("cluster")
	for _, action := range []string{ClusterStatus, ClusterAdd, ClusterRemove, ClusterStepDown} {
		name := strings.ReplaceAll(action, "-", "_")
		err := cluster.AddEndpoint(name, micro.HandlerFunc(func(req micro.Request) {
			members, err := decodeClusterRequest(action, req.Data())
			if err != nil {
				_ = req.Error("400", err.Error(), nil)
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			g, err := open(ctx) // per request: the group may not exist yet while an upgrade drains
			if err != nil {
				_ = req.Error("503", err.Error(), nil)
				return
			}
			st, err := clusterAction(ctx, g, action, members)
			if err != nil {
				_ = req.Error("400", err.Error(), nil)
				return
			}
			if action != ClusterStatus {
				log.Info("cluster membership changed", "action", action, "members", members)
			}
			_ = req.RespondJSON(st)
		}), micro.WithEndpointMetadata(map[string]string{"action": action}))
		if err != nil {
			_ = svc.Stop()
			return nil, fmt.Errorf("micro service: endpoint %s: %w", name, err)
		}
	}
	return svc, nil
}

// semver is semantic versioning's own pattern (semver.org), which the micro framework checks.
var semver = regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$`)

// serviceVersion is the build's version as the micro framework wants it (semantic versioning): a
// tag (its "v" dropped) as it is, anything else (a commit, "devel") as build metadata of 0.0.0.
func serviceVersion(build string) string {
	if v := strings.TrimPrefix(build, "v"); semver.MatchString(v) {
		return v
	}
	meta := regexp.MustCompile(`[^0-9A-Za-z-]+`).ReplaceAllString(build, "-")
	meta = strings.Trim(meta, "-")
	if meta == "" {
		return "0.0.0"
	}
	return "0.0.0+" + meta
}
