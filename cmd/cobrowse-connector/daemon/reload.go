package daemon

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"

	"github.com/cobrowse-connector/cobrowse-connector/configs"
	"github.com/cobrowse-connector/cobrowse-connector/connector/cec"
	"github.com/cobrowse-connector/cobrowse-connector/connector/zoom"
)

// The config keys a reload applies without a restart: the secrets the daemon can swap while it
// runs. Every other changed key needs a restart.
const (
	keyWebhookSecret   = "zoom.webhook.secret"
	keyWebhookPrevious = "zoom.webhook.previous_secret"
	keyBearerSecret    = "zoom.token_endpoint.bearer_secret"
	keyBearerPrevious  = "zoom.token_endpoint.previous_bearer_secret"
	keySDKSecret       = "zoom.sdk_secret"
	keyClientSecret    = "zoom.client_secret"
	keyCECAppSecret    = "cec.app_secret"
	keyRotationOverlap = "zoom.rotation_overlap" // read by each reload, for the rotation it makes
)

// The reload's log lines (docs/retention-and-rotation.md lists them).
const (
	reloadedMsg         = "config reloaded" // one per reload that was read and checked
	reloadRefusedMsg    = "config reload refused; the running config stays"
	restartNeededMsg    = "config change needs a restart; not applied"
	secretNotAppliedMsg = "a reloaded secret could not be applied; the running one stays"
)

// reloadable lists the keys a reload applies.
var reloadable = []string{keyWebhookSecret, keyWebhookPrevious, keyBearerSecret, keyBearerPrevious, keySDKSecret, keyClientSecret,
	keyCECAppSecret, keyRotationOverlap}

// LoadRunConfig loads the config the way `run` needs it: the file at path ("": the embedded
// default) with the environment, checked by ValidateRun and with the TLS and key files it names
// readable (CheckFiles). `run`, `config`, `health`, `cluster` and a reload (SIGHUP) all load
// through it, so that each accepts exactly what `run` accepts. A refusal names the file.
func LoadRunConfig(path string) (configs.Config, error) {
	cfg, err := configs.Load(path)
	if err != nil {
		return configs.Config{}, err
	}
	if err := cfg.ValidateRun(); err != nil {
		if e, ok := errors.AsType[*configs.Error](err); ok {
			e.File = path
		}
		return configs.Config{}, err
	}
	if err := CheckFiles(cfg); err != nil {
		return configs.Config{}, err
	}
	return cfg, nil
}

// reloader applies reloaded configs to a running daemon: the secrets it can swap are swapped,
// every other change is reported as needing a restart.
type reloader struct {
	load func() (configs.Config, error)
	vs   *vendors
	// tokens is the Zoom token endpoint, when the public listener serves one.
	tokens *zoom.TokenEndpoint
	log    *slog.Logger

	mu      sync.Mutex
	running configs.Config // the config the daemon runs with: the start's, with the secrets reloads applied
	// reported holds, for each key a reload found changed and could not apply, the value last
	// reported: a later reload with the same value says nothing more of it.
	reported map[string]any
}

func newReloader(cfg configs.Config, load func() (configs.Config, error), vs *vendors, tokens *zoom.TokenEndpoint, log *slog.Logger) *reloader {
	return &reloader{load: load, vs: vs, tokens: tokens, log: log.With("component", "reload"), running: cfg, reported: make(map[string]any)}
}

// reload reads the config again and applies it; nil when it was read and checked (even if some
// keys need a restart), the refusal otherwise (the running config stays).
func (r *reloader) reload() error {
	next, err := r.load()
	if err != nil {
		r.log.Error(reloadRefusedMsg, "error", err)
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	changed := changedKeys(r.running, next)
	overlap := next.Zoom.RotationOverlap.D()
	var secrets []string
	apply := func(keys []string, do func() error) {
		var these []string
		for _, k := range keys {
			if slices.Contains(changed, k) {
				these = append(these, k)
			}
		}
		if len(these) == 0 {
			return
		}
		if err := do(); err != nil {
			r.log.Error(secretNotAppliedMsg, "keys", these, "error", err)
			return
		}
		for _, k := range these {
			setLeaf(&r.running, next, k)
		}
		secrets = append(secrets, these...)
	}
	z, vs := next.Zoom, r.vs
	apply([]string{keyWebhookSecret, keyWebhookPrevious}, func() error {
		if vs.zoomWebhook == nil {
			return nil // Zoom is not enabled: nothing uses them
		}
		return vs.zoomWebhook.Rotate(zoomSecrets(z.Webhook.Secret, z.Webhook.PreviousSecret), overlap)
	})
	apply([]string{keyBearerSecret, keyBearerPrevious}, func() error {
		if r.tokens == nil {
			return nil
		}
		return r.tokens.RotateBearers(zoomSecrets(z.TokenEndpoint.BearerSecret, z.TokenEndpoint.PreviousBearerSecret), overlap)
	})
	apply([]string{keySDKSecret}, func() error {
		if vs.zoomMinter == nil {
			return nil
		}
		return vs.zoomMinter.SetSecret(zoom.Secret(z.SDKSecret.Reveal()))
	})
	apply([]string{keyClientSecret}, func() error {
		if vs.zoom == nil {
			return nil
		}
		return vs.zoom.SetClientSecret(zoom.Secret(z.ClientSecret.Reveal()))
	})
	apply([]string{keyCECAppSecret}, func() error {
		if vs.cec == nil {
			return nil
		}
		return vs.cec.SetAppSecret(cec.Secret(next.CEC.AppSecret.Reveal()))
	})
	if slices.Contains(changed, keyRotationOverlap) {
		setLeaf(&r.running, next, keyRotationOverlap)
	}

	// Every other change waits for a restart: said once per key and value.
	nextLeaves := leaves(next)
	for _, k := range changed {
		if slices.Contains(reloadable, k) {
			continue
		}
		if v, ok := r.reported[k]; ok && reflect.DeepEqual(v, nextLeaves[k]) {
			continue
		}
		r.reported[k] = nextLeaves[k]
		r.log.Warn(restartNeededMsg, "key", k)
	}
	for k := range r.reported {
		if !slices.Contains(changed, k) {
			delete(r.reported, k) // back to the running value
		}
	}
	if secrets == nil {
		secrets = []string{}
	}
	r.log.Info(reloadedMsg, "secrets_changed", secrets)
	return nil
}

// zoomSecrets is a current secret and, when set, the configured previous one.
func zoomSecrets(current, previous configs.Secret) []zoom.Secret {
	out := []zoom.Secret{zoom.Secret(current.Reveal())}
	if previous != "" {
		out = append(out, zoom.Secret(previous.Reveal()))
	}
	return out
}

// leaves maps every key of the config (a dotted path of yaml names, as the config's errors and
// environment variables name them) to its value.
func leaves(c configs.Config) map[string]any {
	out := make(map[string]any)
	walkConfig(reflect.ValueOf(&c).Elem(), "", func(key string, v reflect.Value) { out[key] = v.Interface() })
	return out
}

// changedKeys lists the keys whose values differ between a and b, in the config's order.
func changedKeys(a, b configs.Config) []string {
	bl := leaves(b)
	var out []string
	walkConfig(reflect.ValueOf(&a).Elem(), "", func(key string, v reflect.Value) {
		if !reflect.DeepEqual(v.Interface(), bl[key]) {
			out = append(out, key)
		}
	})
	return out
}

// setLeaf sets the key of dst to its value in src.
func setLeaf(dst *configs.Config, src configs.Config, key string) {
	from := leaves(src)[key]
	walkConfig(reflect.ValueOf(dst).Elem(), "", func(k string, v reflect.Value) {
		if k == key {
			v.Set(reflect.ValueOf(from))
		}
	})
}

var durationType = reflect.TypeFor[configs.Duration]()

// walkConfig calls fn for every leaf under v (a section is a struct, a duration is a leaf).
func walkConfig(v reflect.Value, path string, fn func(key string, v reflect.Value)) {
	t := v.Type()
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		key := name
		if path != "" {
			key = path + "." + name
		}
		f := v.Field(i)
		if f.Kind() == reflect.Struct && f.Type() != durationType {
			walkConfig(f, key, fn)
			continue
		}
		fn(key, f)
	}
}

// startReloads reloads the config on rl at each value of trigger or hup (either may be nil: never
// ready), on a goroutine of wg that ends when ctx is done. Run owns hup (caught from its start).
// done, if set, gets each reload's outcome.
func startReloads(ctx context.Context, wg *sync.WaitGroup, rl *reloader, trigger <-chan struct{}, hup <-chan os.Signal, done func(error)) {
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-trigger:
			case <-hup:
			}
			rl.log.Debug("reloading the config")
			err := rl.reload()
			if done != nil {
				done(err)
			}
		}
	})
}
