package deploy

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// manifests reads every YAML file of deploy/kubernetes, by name.
func manifests(t *testing.T) map[string][]byte {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		if filepath.Dir(dir) == dir {
			t.Fatal("no go.mod above the working directory")
		}
		dir = filepath.Dir(dir)
	}
	paths, err := filepath.Glob(filepath.Join(dir, "deploy", "kubernetes", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		files[filepath.Base(p)] = b
	}
	for _, want := range []string{"sidecar.yaml", "statefulset.yaml", "configmap.yaml", "secret.yaml", "zoom-public.yaml"} {
		if files[want] == nil {
			t.Fatalf("deploy/kubernetes/%s is missing", want)
		}
	}
	return files
}

// Every manifest parses, and every container that runs the daemon passes every check.
func TestManifestsRunTheDaemon(t *testing.T) {
	files := manifests(t)
	for _, err := range check(files) {
		t.Error(err)
	}
	var p problems
	docs := parse(files, &p)
	ws := workloads(docs, &p)
	dcs := daemonContainers(ws, &p)
	perFile := map[string]int{}
	for _, dc := range dcs {
		perFile[dc.w.doc.file]++
		if dc.c.StartupProbe == nil || dc.c.LivenessProbe == nil || dc.c.ReadinessProbe == nil {
			t.Errorf("%s: the examples carry a startup, a liveness and a readiness probe", dc)
		}
		if dc.w.doc.obj.Kind == "StatefulSet" {
			i := slices.IndexFunc(dc.c.Env, func(e envVar) bool { return e.Name == "COBROWSE_CLUSTER_MEMBER" })
			if i < 0 || dc.c.Env[i].ValueFrom == nil || dc.c.Env[i].ValueFrom.FieldRef == nil || dc.c.Env[i].ValueFrom.FieldRef.FieldPath != "metadata.name" {
				t.Errorf("%s: COBROWSE_CLUSTER_MEMBER must come from the pod's name (metadata.name)", dc)
			}
		}
	}
	if perFile["sidecar.yaml"] != 1 || perFile["statefulset.yaml"] != 1 {
		t.Errorf("daemon containers per file: %v, want one in sidecar.yaml and one in statefulset.yaml", perFile)
	}
	kinds := map[string]bool{}
	for _, d := range docs {
		kinds[d.file+" "+d.obj.Kind] = true
	}
	for _, want := range []string{"statefulset.yaml Service", "statefulset.yaml StatefulSet", "statefulset.yaml PodDisruptionBudget",
		"sidecar.yaml Deployment", "configmap.yaml ConfigMap", "secret.yaml Secret", "zoom-public.yaml Service"} {
		if !kinds[want] {
			t.Errorf("no %s", want)
		}
	}
	checkServices(t, docs, ws)
	if len(p) > 0 {
		t.Error(errors.Join(p...))
	}
}

// Each Service selects pods of a workload here, and each of its named target ports is a port of
// those pods; a StatefulSet's serviceName is a headless Service.
func checkServices(t *testing.T, docs []document, ws []workload) {
	t.Helper()
	type service struct {
		Spec struct {
			ClusterIP string            `yaml:"clusterIP"`
			Selector  map[string]string `yaml:"selector"`
			Ports     []struct {
				TargetPort yaml.Node `yaml:"targetPort"`
			} `yaml:"ports"`
		} `yaml:"spec"`
	}
	services := map[string]service{}
	for _, d := range docs {
		if d.obj.Kind != "Service" {
			continue
		}
		var s service
		if err := d.node.Decode(&s); err != nil {
			t.Fatalf("%s: %v", d, err)
		}
		services[d.obj.Metadata.Name] = s
		selected := 0
		for _, w := range ws {
			var labels map[string]string
			if err := child(w.doc.node, "spec", "template", "metadata", "labels").Decode(&labels); err != nil {
				continue
			}
			if len(s.Spec.Selector) == 0 || !isSubset(s.Spec.Selector, labels) {
				continue
			}
			selected++
			for _, port := range s.Spec.Ports {
				if port.TargetPort.Tag == "!!int" || port.TargetPort.Value == "" {
					continue
				}
				found := false
				for _, c := range append(slices.Clone(w.spec.Containers), w.spec.InitContainers...) {
					found = found || slices.ContainsFunc(c.Ports, func(cp containerPort) bool { return cp.Name == port.TargetPort.Value })
				}
				if !found {
					t.Errorf("%s: targetPort %q is no port of %s %s", d, port.TargetPort.Value, w.doc.obj.Kind, w.doc.obj.Metadata.Name)
				}
			}
		}
		if selected == 0 {
			t.Errorf("%s: its selector %v selects no pod template here", d, s.Spec.Selector)
		}
	}
	for _, w := range ws {
		if w.doc.obj.Kind != "StatefulSet" {
			continue
		}
		name := child(w.doc.node, "spec", "serviceName")
		if name == nil || services[name.Value].Spec.ClusterIP != "None" {
			t.Errorf("%s: spec.serviceName must name a headless Service defined here", w.doc)
		}
	}
}

func isSubset(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// Each mistake in a manifest is caught, and the problem names the file and the field.
func TestChecksCatchMistakes(t *testing.T) {
	orig := manifests(t)
	for _, tc := range []struct {
		name      string
		file      string
		old, new  string
		wantField string
	}{
		{"probe path the daemon does not serve", "sidecar.yaml", "path: /readyz", "path: /ready", "readinessProbe.httpGet.path"},
		{"liveness on /readyz", "statefulset.yaml", "          livenessProbe:\n            httpGet:\n              path: /healthz", "          livenessProbe:\n            httpGet:\n              path: /readyz", "livenessProbe.httpGet.path"},
		{"probe port name unknown", "sidecar.yaml", "path: /healthz\n              port: internal\n            periodSeconds: 10", "path: /healthz\n              port: metrics\n            periodSeconds: 10", "livenessProbe.httpGet.port"},
		{"probe port number not http.listen's", "statefulset.yaml", "path: /readyz\n              port: internal", "path: /readyz\n              port: 8443", "readinessProbe.httpGet.port"},
		{"http.listen moved without the container port", "configmap.yaml", `listen: ":9180"`, `listen: ":9190"`, "startupProbe.httpGet.port"},
		{"http.listen moved by the environment", "statefulset.yaml", "            - name: COBROWSE_ZOOM_ENABLED", "            - name: COBROWSE_HTTP_LISTEN\n              value: \":9999\"\n            - name: COBROWSE_ZOOM_ENABLED", "livenessProbe.httpGet.port"},
		{"HTTPS on the internal listener", "sidecar.yaml", "path: /readyz\n", "path: /readyz\n              scheme: HTTPS\n", "readinessProbe.httpGet.scheme"},
		{"a misspelt variable", "statefulset.yaml", "name: COBROWSE_ZOOM_SDK_SECRET", "name: COBROWSE_ZOOM_SDK_SECERT", "COBROWSE_ZOOM_SDK_SECERT"},
		{"a variable of a section, not a key", "statefulset.yaml", "name: COBROWSE_ZOOM_ENABLED", "name: COBROWSE_ZOOM", "COBROWSE_ZOOM is no config key"},
		{"a bad value in the environment", "statefulset.yaml", `value: ":8443"`, `value: "8443"`, "COBROWSE_HTTP_PUBLIC_LISTEN"},
		{"http.public_listen moved without the container port", "statefulset.yaml", `value: ":8443"`, `value: ":8444"`, "http.public_listen"},
		{"an unknown key in the config file", "configmap.yaml", "    shutdown_timeout: 15s", "    shutdown_timeout: 15s\n    shutdown_timout: 15s", "shutdown_timout"},
		{"the config file without a Genesys URL", "configmap.yaml", "      url: https://cobrowse.contact.example.com/cobrowse\n", "", "genesys.url"},
		{"an optional secret key absent: no variable", "statefulset.yaml", "key: token-bearer-secret\n", "key: bearer\n                  optional: true\n", "zoom.token_endpoint.bearer_secret"},
		{"a secret key missing", "secret.yaml", "  webhook-secret: PLACEHOLDER-zoom-webhook-secret-token\n", "", `has no key "webhook-secret"`},
		{"grace period not above the drain", "sidecar.yaml", "terminationGracePeriodSeconds: 30", "terminationGracePeriodSeconds: 15", "terminationGracePeriodSeconds 15"},
		{"grace period not above the drain and the pause", "statefulset.yaml", "terminationGracePeriodSeconds: 30", "terminationGracePeriodSeconds: 20", "terminationGracePeriodSeconds 20"},
		{"drain longer than the grace period", "configmap.yaml", "shutdown_timeout: 15s", "shutdown_timeout: 40s", "terminationGracePeriodSeconds 30"},
		{"a preStop exec", "statefulset.yaml", "              sleep:\n                seconds: 5", "              exec:\n                command: [sleep, \"5\"]", "lifecycle.preStop"},
		{"service links on", "sidecar.yaml", "enableServiceLinks: false", "enableServiceLinks: true", "enableServiceLinks"},
		{"service links by default", "statefulset.yaml", "      enableServiceLinks: false\n", "", "enableServiceLinks"},
		{"root allowed", "statefulset.yaml", "            runAsNonRoot: true\n            runAsUser: 65534", "            runAsNonRoot: false\n            runAsUser: 65534", "runAsNonRoot"},
		{"writable root file system", "sidecar.yaml", "            runAsGroup: 65534\n            allowPrivilegeEscalation: false\n            readOnlyRootFilesystem: true", "            runAsGroup: 65534\n            allowPrivilegeEscalation: false\n            readOnlyRootFilesystem: false", "readOnlyRootFilesystem"},
		{"capabilities kept", "statefulset.yaml", "drop: [ALL]", "drop: [NET_RAW]", "capabilities.drop"},
		{"seccomp unconfined", "statefulset.yaml", "            seccompProfile:\n              type: RuntimeDefault\n", "            seccompProfile:\n              type: Unconfined\n", "seccompProfile"},
		{"a command the binary has not", "sidecar.yaml", "args: [run, --config", "args: [serve, --config", "args"},
		{"demo in production", "statefulset.yaml", "args: [run, --config, /etc/cobrowse-connector/config.yaml]", "args: [demo]", "args"},
		{"a flag run does not take", "sidecar.yaml", "args: [run, --config, /etc/cobrowse-connector/config.yaml]", "args: [run, --check, --config, /etc/cobrowse-connector/config.yaml]", "args"},
		{"a config path nothing is mounted at", "statefulset.yaml", "args: [run, --config, /etc/cobrowse-connector/config.yaml]", "args: [run, --config, /config/cobrowse.yaml]", "/config/cobrowse.yaml"},
		{"the ConfigMap's item renamed", "sidecar.yaml", "                path: config.yaml", "                path: cobrowse.yaml", "holds no key"},
		{"an exec probe that is not health", "sidecar.yaml", "          livenessProbe:\n            httpGet:\n              path: /healthz\n              port: internal", "          livenessProbe:\n            exec:\n              command: [cobrowse-connector, version]", "livenessProbe.exec.command"},
		{"a native sidecar that never ends its start", "sidecar.yaml", sidecarContainers, nativeSidecar, "restartPolicy"},
		{"a misspelt probe", "sidecar.yaml", "readinessProbe:", "readinesProbe:", "readinesProbe"},
		{"no resources", "statefulset.yaml", "              memory: 1Gi\n", "", "resources"},
		{"a document that does not parse", "zoom-public.yaml", "  selector:\n", "  selector\n", "zoom-public.yaml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := maps.Clone(orig)
			if !strings.Contains(string(files[tc.file]), tc.old) {
				t.Fatalf("%s does not hold %q", tc.file, tc.old)
			}
			files[tc.file] = []byte(strings.Replace(string(files[tc.file]), tc.old, tc.new, 1))
			errs := check(files)
			if len(errs) == 0 {
				t.Fatal("not caught")
			}
			// The problem names a file, and the field.
			found := false
			for _, err := range errs {
				msg := err.Error()
				if strings.Contains(msg, ".yaml:") && strings.Contains(msg, tc.wantField) {
					found = true
				}
			}
			if !found {
				t.Fatalf("no problem names the file and %q: %v", tc.wantField, errors.Join(errs...))
			}
		})
	}
}

// sidecarContainers is the start of sidecar.yaml's container list; nativeSidecar the same with the
// daemon as an init container (Kubernetes' native sidecars).
const (
	sidecarContainers = "      containers:\n        # CHANGE: your application (a placeholder here).\n        - name: app\n" +
		"          image: registry.example.com/contact-center/app:1.0.0\n          ports:\n            - name: http\n" +
		"              containerPort: 8080\n          securityContext:\n            allowPrivilegeEscalation: false\n" +
		"            readOnlyRootFilesystem: true\n            capabilities:\n              drop: [ALL]\n\n        - name: cobrowse-connector\n"
	nativeSidecar = "      containers:\n        - name: app\n          image: registry.example.com/contact-center/app:1.0.0\n" +
		"      initContainers:\n        - name: cobrowse-connector\n"
)

// Other forms the daemon takes pass: an exec probe of `cobrowse-connector health`, the command
// written in full, a probe port by number, the daemon as a native sidecar, a Secret made outside
// the set, the seccomp profile from the pod.
func TestOtherFormsAccepted(t *testing.T) {
	orig := manifests(t)
	for _, tc := range []struct{ name, file, old, new string }{
		{"exec probe of health", "sidecar.yaml", "          livenessProbe:\n            httpGet:\n              path: /healthz\n              port: internal",
			"          livenessProbe:\n            exec:\n              command: [/usr/local/bin/cobrowse-connector, health, --config, /etc/cobrowse-connector/config.yaml]"},
		{"command and args", "statefulset.yaml", "args: [run, --config, /etc/cobrowse-connector/config.yaml]",
			"command: [/usr/local/bin/cobrowse-connector]\n          args: [run, --config=/etc/cobrowse-connector/config.yaml]"},
		{"a native sidecar", "sidecar.yaml", sidecarContainers, strings.Replace(nativeSidecar, "- name: cobrowse-connector\n", "- name: cobrowse-connector\n          restartPolicy: Always\n", 1)},
		{"probe port by number", "sidecar.yaml", "path: /readyz\n              port: internal", "path: /readyz\n              port: 9180"},
		{"a Secret made elsewhere", "secret.yaml", "  name: cobrowse-connector-zoom\n", "  name: made-elsewhere\n"},
		{"seccomp from the pod", "statefulset.yaml", "            seccompProfile:\n              type: RuntimeDefault\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := maps.Clone(orig)
			if !strings.Contains(string(files[tc.file]), tc.old) {
				t.Fatalf("%s does not hold %q", tc.file, tc.old)
			}
			files[tc.file] = []byte(strings.Replace(string(files[tc.file]), tc.old, tc.new, 1))
			if errs := check(files); len(errs) > 0 {
				t.Fatal(errors.Join(errs...))
			}
		})
	}
}

func TestDaemonImage(t *testing.T) {
	for image, want := range map[string]bool{
		"registry.example.com/cobrowse-connector:1.0.0": true,
		"cobrowse-connector":                            true,
		"registry.example.com:5000/cobrowse-connector":  true,
		"ghcr.io/acme/cobrowse-connector@sha256:abc":    true,
		"registry.example.com/contact-center/app:1.0.0": false,
		"registry.example.com:5000/other":               false,
	} {
		if got := daemonImage(image); got != want {
			t.Errorf("daemonImage(%q) = %v", image, got)
		}
	}
}
