// Package deploy checks the Kubernetes manifests of deploy/kubernetes against the daemon they run:
// the config keys, the config file, the listener the probes ask, the routes, the commands, the
// shutdown bound and the security context. Every problem names the file, the object, the
// container and the field.
package deploy

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/cobrowse-connector/cobrowse-connector/cmd/cobrowse-connector/daemon"
	"github.com/cobrowse-connector/cobrowse-connector/configs"
)

// daemonRoutes are the paths the daemon serves on its internal listener (http.listen) that a
// probe may ask.
var daemonRoutes = []string{daemon.LivenessPath, daemon.ReadinessPath}

// livenessPath is the one route a liveness probe may ask: /readyz fails while NATS is away, and a
// liveness probe on it would restart a daemon that is only waiting for NATS.
const livenessPath = daemon.LivenessPath

// The image (the repository's Dockerfile): its entrypoint and its command.
var (
	imageEntrypoint = "/usr/local/bin/cobrowse-connector"
	imageCmd        = []string{"run", "--config", "/etc/cobrowse-connector/config.yaml"}
)

// daemonImage reports whether an image is the daemon's: its repository's last path element is
// cobrowse-connector.
func daemonImage(image string) bool {
	repo, _, _ := strings.Cut(image, "@")
	if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
		repo = repo[:i]
	}
	return path.Base(repo) == "cobrowse-connector"
}

// document is one YAML document of a manifest file.
type document struct {
	file string
	node *yaml.Node // the document's mapping
	obj  object
}

type object struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Data       map[string]string `yaml:"data"`
	StringData map[string]string `yaml:"stringData"`
}

func (d document) String() string {
	return fmt.Sprintf("%s:%d (%s %s)", d.file, d.node.Line, d.obj.Kind, d.obj.Metadata.Name)
}

// problems collects what is wrong, each naming where.
type problems []error

func (p *problems) add(where, format string, args ...any) {
	*p = append(*p, fmt.Errorf("%s: %s", where, fmt.Sprintf(format, args...)))
}

// parse reads every YAML document of every file (by name); a document that does not parse, or
// lacks apiVersion, kind or metadata.name, is a problem.
func parse(files map[string][]byte, p *problems) []document {
	var docs []document
	for _, name := range sortedKeys(files) {
		dec := yaml.NewDecoder(bytes.NewReader(files[name]))
		for i := 0; ; i++ {
			var n yaml.Node
			err := dec.Decode(&n)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				p.add(name, "document %d does not parse: %v", i+1, err)
				break
			}
			if len(n.Content) == 0 || n.Content[0].Kind != yaml.MappingNode {
				p.add(fmt.Sprintf("%s:%d", name, n.Line), "document %d is not a mapping", i+1)
				continue
			}
			d := document{file: name, node: n.Content[0]}
			if err := d.node.Decode(&d.obj); err != nil {
				p.add(fmt.Sprintf("%s:%d", name, d.node.Line), "document %d: %v", i+1, err)
				continue
			}
			if d.obj.APIVersion == "" || d.obj.Kind == "" || d.obj.Metadata.Name == "" {
				p.add(d.String(), "apiVersion, kind and metadata.name are required")
				continue
			}
			docs = append(docs, d)
		}
	}
	return docs
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// child returns the value of key in a mapping node, nil if absent.
func child(n *yaml.Node, keys ...string) *yaml.Node {
	for _, key := range keys {
		if n == nil || n.Kind != yaml.MappingNode {
			return nil
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				next = n.Content[i+1]
			}
		}
		n = next
	}
	return n
}

// The fields of the Kubernetes API objects the check reads; any other key is a problem (a typo
// such as readinesProbe would otherwise pass unseen).
var (
	podSpecFields = []string{"volumes", "initContainers", "containers", "ephemeralContainers", "restartPolicy",
		"terminationGracePeriodSeconds", "activeDeadlineSeconds", "dnsPolicy", "nodeSelector", "serviceAccountName",
		"serviceAccount", "automountServiceAccountToken", "nodeName", "hostNetwork", "hostPID", "hostIPC",
		"shareProcessNamespace", "securityContext", "imagePullSecrets", "hostname", "subdomain", "affinity",
		"schedulerName", "tolerations", "hostAliases", "priorityClassName", "priority", "dnsConfig", "readinessGates",
		"runtimeClassName", "enableServiceLinks", "preemptionPolicy", "overhead", "topologySpreadConstraints",
		"setHostnameAsFQDN", "os", "hostUsers", "schedulingGates", "resourceClaims", "resources"}
	containerFields = []string{"name", "image", "command", "args", "workingDir", "ports", "envFrom", "env", "resources",
		"resizePolicy", "restartPolicy", "volumeMounts", "volumeDevices", "livenessProbe", "readinessProbe",
		"startupProbe", "lifecycle", "terminationMessagePath", "terminationMessagePolicy", "imagePullPolicy",
		"securityContext", "stdin", "stdinOnce", "tty"}
	probeFields = []string{"exec", "httpGet", "tcpSocket", "grpc", "initialDelaySeconds", "timeoutSeconds",
		"periodSeconds", "successThreshold", "failureThreshold", "terminationGracePeriodSeconds"}
	securityContextFields = []string{"capabilities", "privileged", "seLinuxOptions", "windowsOptions", "runAsUser",
		"runAsGroup", "runAsNonRoot", "readOnlyRootFilesystem", "allowPrivilegeEscalation", "procMount",
		"seccompProfile", "appArmorProfile"}
)

func unknownKeys(n *yaml.Node, known []string) []string {
	var out []string
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i].Value; !slices.Contains(known, k) {
			out = append(out, k)
		}
	}
	return out
}

// The parts of a pod spec the check reads.
type podSpec struct {
	EnableServiceLinks            *bool            `yaml:"enableServiceLinks"`
	TerminationGracePeriodSeconds *int64           `yaml:"terminationGracePeriodSeconds"`
	SecurityContext               *securityContext `yaml:"securityContext"`
	Containers                    []container      `yaml:"containers"`
	InitContainers                []container      `yaml:"initContainers"`
	Volumes                       []volume         `yaml:"volumes"`
}

type container struct {
	Name            string           `yaml:"name"`
	Image           string           `yaml:"image"`
	RestartPolicy   string           `yaml:"restartPolicy"`
	Command         []string         `yaml:"command"`
	Args            []string         `yaml:"args"`
	Env             []envVar         `yaml:"env"`
	EnvFrom         []envFrom        `yaml:"envFrom"`
	Ports           []containerPort  `yaml:"ports"`
	LivenessProbe   *probe           `yaml:"livenessProbe"`
	ReadinessProbe  *probe           `yaml:"readinessProbe"`
	StartupProbe    *probe           `yaml:"startupProbe"`
	Lifecycle       *lifecycle       `yaml:"lifecycle"`
	SecurityContext *securityContext `yaml:"securityContext"`
	VolumeMounts    []volumeMount    `yaml:"volumeMounts"`
	Resources       struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
}

type envVar struct {
	Name      string `yaml:"name"`
	Value     string `yaml:"value"`
	ValueFrom *struct {
		FieldRef *struct {
			FieldPath string `yaml:"fieldPath"`
		} `yaml:"fieldRef"`
		SecretKeyRef    *keyRef   `yaml:"secretKeyRef"`
		ConfigMapKeyRef *keyRef   `yaml:"configMapKeyRef"`
		ResourceField   *struct{} `yaml:"resourceFieldRef"`
	} `yaml:"valueFrom"`
}

type keyRef struct {
	Name     string `yaml:"name"`
	Key      string `yaml:"key"`
	Optional bool   `yaml:"optional"`
}

type envFrom struct {
	Prefix       string `yaml:"prefix"`
	ConfigMapRef *struct {
		Name string `yaml:"name"`
	} `yaml:"configMapRef"`
	SecretRef *struct {
		Name string `yaml:"name"`
	} `yaml:"secretRef"`
}

type containerPort struct {
	Name          string `yaml:"name"`
	ContainerPort int    `yaml:"containerPort"`
}

type probe struct {
	HTTPGet *struct {
		Path   string    `yaml:"path"`
		Port   yaml.Node `yaml:"port"`
		Scheme string    `yaml:"scheme"`
	} `yaml:"httpGet"`
	Exec *struct {
		Command []string `yaml:"command"`
	} `yaml:"exec"`
	TCPSocket *struct {
		Port yaml.Node `yaml:"port"`
	} `yaml:"tcpSocket"`
	GRPC *struct{} `yaml:"grpc"`
}

type lifecycle struct {
	PreStop *struct {
		Sleep *struct {
			Seconds int64 `yaml:"seconds"`
		} `yaml:"sleep"`
		Exec    *struct{} `yaml:"exec"`
		HTTPGet *struct{} `yaml:"httpGet"`
	} `yaml:"preStop"`
}

type securityContext struct {
	RunAsNonRoot             *bool  `yaml:"runAsNonRoot"`
	RunAsUser                *int64 `yaml:"runAsUser"`
	Privileged               *bool  `yaml:"privileged"`
	ReadOnlyRootFilesystem   *bool  `yaml:"readOnlyRootFilesystem"`
	AllowPrivilegeEscalation *bool  `yaml:"allowPrivilegeEscalation"`
	Capabilities             *struct {
		Drop []string `yaml:"drop"`
		Add  []string `yaml:"add"`
	} `yaml:"capabilities"`
	SeccompProfile *struct {
		Type string `yaml:"type"`
	} `yaml:"seccompProfile"`
}

type volumeMount struct {
	Name      string `yaml:"name"`
	MountPath string `yaml:"mountPath"`
	SubPath   string `yaml:"subPath"`
}

type volume struct {
	Name      string `yaml:"name"`
	ConfigMap *struct {
		Name  string `yaml:"name"`
		Items []item `yaml:"items"`
	} `yaml:"configMap"`
	Secret *struct {
		SecretName string `yaml:"secretName"`
		Items      []item `yaml:"items"`
	} `yaml:"secret"`
}

type item struct {
	Key  string `yaml:"key"`
	Path string `yaml:"path"`
}

// workload is a pod template found in a document.
type workload struct {
	doc     document
	podName string // what metadata.name gives the downward API in one of its pods
	node    *yaml.Node
	spec    podSpec
}

// workloads finds the pod templates: a Pod's spec, a Deployment's, StatefulSet's, DaemonSet's,
// ReplicaSet's or Job's spec.template.spec, a CronJob's spec.jobTemplate.spec.template.spec.
func workloads(docs []document, p *problems) []workload {
	var out []workload
	for _, d := range docs {
		var n *yaml.Node
		name := d.obj.Metadata.Name
		switch d.obj.Kind {
		case "Pod":
			n = child(d.node, "spec")
		case "StatefulSet":
			n, name = child(d.node, "spec", "template", "spec"), name+"-0"
		case "Deployment", "DaemonSet", "ReplicaSet", "Job":
			n, name = child(d.node, "spec", "template", "spec"), name+"-5d4f7c9b8-x2x7q"
		case "CronJob":
			n, name = child(d.node, "spec", "jobTemplate", "spec", "template", "spec"), name+"-29000000-x2x7q"
		default:
			continue
		}
		if n == nil {
			p.add(d.String(), "no pod template")
			continue
		}
		w := workload{doc: d, podName: name, node: n}
		if err := n.Decode(&w.spec); err != nil {
			p.add(d.String(), "pod spec: %v", err)
			continue
		}
		if k := unknownKeys(n, podSpecFields); len(k) > 0 {
			p.add(d.String(), "pod spec: unknown fields %q", k)
		}
		out = append(out, w)
	}
	return out
}

// daemonContainer is a container of a workload that runs the daemon's image.
type daemonContainer struct {
	w    workload
	c    container
	node *yaml.Node
	init bool // one of the initContainers
}

func (dc daemonContainer) String() string {
	return fmt.Sprintf("%s:%d (%s %s, container %s)", dc.w.doc.file, dc.node.Line, dc.w.doc.obj.Kind, dc.w.doc.obj.Metadata.Name, dc.c.Name)
}

func daemonContainers(ws []workload, p *problems) []daemonContainer {
	var out []daemonContainer
	for _, w := range ws {
		for _, list := range []string{"containers", "initContainers"} {
			nodes := child(w.node, list)
			if nodes == nil {
				continue
			}
			for i, cn := range nodes.Content {
				var c container
				if err := cn.Decode(&c); err != nil {
					p.add(fmt.Sprintf("%s:%d", w.doc.file, cn.Line), "%s[%d]: %v", list, i, err)
					continue
				}
				if k := unknownKeys(cn, containerFields); len(k) > 0 {
					p.add(fmt.Sprintf("%s:%d", w.doc.file, cn.Line), "container %s: unknown fields %q", c.Name, k)
				}
				if daemonImage(c.Image) {
					out = append(out, daemonContainer{w: w, c: c, node: cn, init: list == "initContainers"})
				}
			}
		}
	}
	return out
}

// set is what the manifests define: ConfigMaps and Secrets by name, and the file of each.
type set struct {
	configMaps map[string]map[string]string
	secrets    map[string]map[string]string
	files      map[string]string // "ConfigMap name" or "Secret name" -> its file
}

func newSet(docs []document, p *problems) set {
	s := set{configMaps: map[string]map[string]string{}, secrets: map[string]map[string]string{}, files: map[string]string{}}
	for _, d := range docs {
		s.files[d.obj.Kind+" "+d.obj.Metadata.Name] = d.file
		switch d.obj.Kind {
		case "ConfigMap":
			s.configMaps[d.obj.Metadata.Name] = d.obj.Data
		case "Secret":
			data := map[string]string{}
			for k, v := range d.obj.Data {
				b, err := base64.StdEncoding.DecodeString(v)
				if err != nil {
					p.add(d.String(), "data.%s: not base64", k)
				}
				data[k] = string(b)
			}
			for k, v := range d.obj.StringData {
				data[k] = v
			}
			s.secrets[d.obj.Metadata.Name] = data
		}
	}
	return s
}

// check runs every check on the manifests (file name -> content) and returns the problems.
func check(files map[string][]byte) []error {
	var p problems
	docs := parse(files, &p)
	s := newSet(docs, &p)
	for _, dc := range daemonContainers(workloads(docs, &p), &p) {
		checkContainer(dc, s, &p)
	}
	return p
}

// checkContainer checks one container that runs the daemon.
func checkContainer(dc daemonContainer, s set, p *problems) {
	where, c, spec := dc.String(), dc.c, dc.w.spec

	// A native sidecar (an init container that keeps running) or a container: an init container
	// that runs to its end would hold the pod's start forever.
	if dc.init && c.RestartPolicy != "Always" {
		p.add(where, "restartPolicy: an init container that runs the daemon is a sidecar: Always")
	}

	// The command.
	argv, ok := commandLine(where, c, p)
	if !ok {
		return
	}
	if argv[0] != "run" {
		p.add(where, "args: the container must run the daemon (run --config FILE), not %q", argv[0])
		return
	}
	configPath, ok := configFlag(where, "args", argv, p)
	if !ok {
		return
	}

	// The environment and the config file, loaded as run loads them.
	env, environ := environment(dc, s, p)
	data, source, ok := configFile(dc, s, configPath, p)
	if !ok {
		return
	}
	cfg, err := configs.Parse(data, func(k string) (string, bool) { v, ok := env[k]; return v, ok }, environ...)
	if err == nil {
		err = cfg.ValidateRun()
	}
	if err != nil {
		p.add(where, "the config (%s: %s, then the environment) does not load: %v", configPath, source, err)
		return
	}

	// The probes, on the internal listener.
	listenPort := ""
	if cfg.HTTP.Listen != "" {
		_, listenPort, _ = net.SplitHostPort(cfg.HTTP.Listen)
	}
	if c.LivenessProbe == nil {
		p.add(where, "livenessProbe: missing")
	}
	for _, pr := range []struct {
		field string
		probe *probe
	}{{"startupProbe", c.StartupProbe}, {"livenessProbe", c.LivenessProbe}, {"readinessProbe", c.ReadinessProbe}} {
		if pr.probe != nil {
			checkProbe(where, pr.field, pr.probe, c, cfg.HTTP.Listen, listenPort, p)
		}
	}
	// The public listener (http.public_listen): a container port of its number, for its Service.
	if cfg.HTTP.PublicListen != "" {
		_, port, _ := net.SplitHostPort(cfg.HTTP.PublicListen)
		if n, err := strconv.Atoi(port); err != nil || !slices.ContainsFunc(c.Ports, func(cp containerPort) bool { return cp.ContainerPort == n }) {
			p.add(where, "ports: no containerPort for http.public_listen %q", cfg.HTTP.PublicListen)
		}
	}
	for _, field := range []string{"startupProbe", "livenessProbe", "readinessProbe"} {
		if k := unknownKeys(child(dc.node, field), probeFields); len(k) > 0 {
			p.add(where, "%s: unknown fields %q", field, k)
		}
	}

	// The shutdown: the grace period covers the preStop pause and the drain.
	grace := int64(30) // Kubernetes' default
	if spec.TerminationGracePeriodSeconds != nil {
		grace = *spec.TerminationGracePeriodSeconds
	}
	var pause int64
	if l := c.Lifecycle; l != nil && l.PreStop != nil {
		switch {
		case l.PreStop.Sleep != nil:
			pause = l.PreStop.Sleep.Seconds
		default:
			p.add(where, "lifecycle.preStop: only a sleep action (the image holds no shell and no other program)")
		}
	}
	if need := cfg.ShutdownTimeout.D() + time.Duration(pause)*time.Second; time.Duration(grace)*time.Second <= need {
		p.add(where, "terminationGracePeriodSeconds %d: must be more than shutdown_timeout (%s) plus the preStop pause (%ds)",
			grace, cfg.ShutdownTimeout, pause)
	}

	// The pod.
	if spec.EnableServiceLinks == nil || *spec.EnableServiceLinks {
		p.add(where, "enableServiceLinks: must be false")
	}
	checkSecurity(where, c.SecurityContext, spec.SecurityContext, p)
	if k := unknownKeys(child(dc.node, "securityContext"), securityContextFields); len(k) > 0 {
		p.add(where, "securityContext: unknown fields %q", k)
	}
	for _, r := range []string{"cpu", "memory"} {
		if c.Resources.Requests[r] == "" || c.Resources.Limits[r] == "" {
			p.add(where, "resources: requests.%s and limits.%s are required", r, r)
		}
	}
}

// commandLine is the daemon's argv after the binary: command[1:] and args, or the image's CMD.
func commandLine(where string, c container, p *problems) ([]string, bool) {
	argv := c.Args
	if len(c.Command) > 0 {
		if c.Command[0] != imageEntrypoint && c.Command[0] != "cobrowse-connector" {
			p.add(where, "command: %q is not the daemon's binary (%s)", c.Command[0], imageEntrypoint)
			return nil, false
		}
		argv = append(slices.Clone(c.Command[1:]), c.Args...)
	} else if len(argv) == 0 {
		argv = imageCmd
	}
	if len(argv) == 0 {
		p.add(where, "command: names no subcommand")
		return nil, false
	}
	return argv, true
}

// configFlag reads the flags of run or health: only --config FILE (or --config=FILE, -config).
// The config path is "" when none is given (the embedded default config).
func configFlag(where, field string, argv []string, p *problems) (string, bool) {
	configPath := ""
	for i := 1; i < len(argv); i++ {
		a := argv[i]
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name != "config" {
			p.add(where, "%s: %s takes only --config FILE, not %q", field, argv[0], a)
			return "", false
		}
		if !hasValue {
			if i+1 >= len(argv) {
				p.add(where, "%s: --config without a file", field)
				return "", false
			}
			i++
			value = argv[i]
		}
		configPath = value
	}
	return configPath, true
}

// environment resolves the container's environment as the pod will have it: literal values, the
// downward API's pod name, and keys of the set's ConfigMaps and Secrets (a Secret made outside the
// set gives a placeholder). Every COBROWSE_ variable must name a config key.
func environment(dc daemonContainer, s set, p *problems) (map[string]string, []string) {
	where := dc.String()
	known := map[string]bool{}
	for _, v := range configs.EnvVars() {
		known[v.Name] = true
	}
	env := map[string]string{}
	setVar := func(field, name, value string) {
		if strings.HasPrefix(name, configs.EnvPrefix) && !known[name] {
			p.add(where, "%s: %s is no config key's variable (COBROWSE_ + the key's path upper-cased, dots as underscores)", field, name)
		}
		env[name] = value
	}
	for _, ef := range dc.c.EnvFrom {
		var data map[string]string
		var ok bool
		switch {
		case ef.ConfigMapRef != nil:
			data, ok = s.configMaps[ef.ConfigMapRef.Name]
		case ef.SecretRef != nil:
			data, ok = s.secrets[ef.SecretRef.Name]
		}
		if !ok {
			p.add(where, "envFrom: names an object this set does not define: its variables cannot be checked")
			continue
		}
		for _, k := range sortedKeys(data) {
			setVar("envFrom", ef.Prefix+k, data[k])
		}
	}
	for i, e := range dc.c.Env {
		field := fmt.Sprintf("env[%d] (%s)", i, e.Name)
		value := e.Value
		var ok bool
		if vf := e.ValueFrom; vf != nil {
			switch {
			case vf.FieldRef != nil && vf.FieldRef.FieldPath == "metadata.name":
				value = dc.w.podName
			case vf.FieldRef != nil:
				value = "value-of-" + vf.FieldRef.FieldPath
			case vf.SecretKeyRef != nil:
				if value, ok = refValue(where, field, "Secret", s.secrets, vf.SecretKeyRef, p); !ok {
					continue // an optional key that is absent: no variable
				}
			case vf.ConfigMapKeyRef != nil:
				if value, ok = refValue(where, field, "ConfigMap", s.configMaps, vf.ConfigMapKeyRef, p); !ok {
					continue
				}
			default:
				value = "1"
			}
		}
		setVar(field, e.Name, value)
	}
	var environ []string
	for _, k := range sortedKeys(env) {
		environ = append(environ, k+"=")
	}
	return env, environ
}

// refValue is the value a key reference gives, and whether the variable is set at all.
func refValue(where, field, kind string, objs map[string]map[string]string, ref *keyRef, p *problems) (string, bool) {
	data, ok := objs[ref.Name]
	if !ok {
		return "placeholder-from-" + ref.Name, true // made outside this set, as real secrets are
	}
	v, ok := data[ref.Key]
	if !ok && !ref.Optional {
		p.add(where, "%s: %s %s has no key %q", field, kind, ref.Name, ref.Key)
	}
	return v, ok
}

// configFile finds the file at configPath in the container: a mounted ConfigMap's or Secret's key,
// else, at the image's own path, the default config baked into the image. source says which.
func configFile(dc daemonContainer, s set, configPath string, p *problems) (content []byte, source string, ok bool) {
	where := dc.String()
	if configPath == "" {
		return nil, "the embedded default config", true
	}
	for _, m := range dc.c.VolumeMounts {
		var name string
		switch {
		case m.SubPath != "" && m.MountPath == configPath:
			name = m.SubPath
		case m.SubPath == "" && path.Dir(configPath) == path.Clean(m.MountPath):
			name = path.Base(configPath)
		default:
			continue
		}
		i := slices.IndexFunc(dc.w.spec.Volumes, func(v volume) bool { return v.Name == m.Name })
		if i < 0 {
			p.add(where, "volumeMounts (%s): no volume of that name", m.Name)
			return nil, "", false
		}
		v := dc.w.spec.Volumes[i]
		var objs map[string]map[string]string
		var objName, what string
		var items []item
		switch {
		case v.ConfigMap != nil:
			objs, objName, items, what = s.configMaps, v.ConfigMap.Name, v.ConfigMap.Items, "ConfigMap "+v.ConfigMap.Name
		case v.Secret != nil:
			objs, objName, items, what = s.secrets, v.Secret.SecretName, v.Secret.Items, "Secret "+v.Secret.SecretName
		default:
			p.add(where, "the config %s is on volume %s, which is neither a ConfigMap nor a Secret: it cannot be checked", configPath, m.Name)
			return nil, "", false
		}
		files, defined := objs[objName]
		if !defined {
			p.add(where, "the config %s comes from %s, which this set does not define", configPath, what)
			return nil, "", false
		}
		key := name
		if items != nil {
			key = ""
			for _, it := range items {
				if it.Path == name {
					key = it.Key
				}
			}
		}
		text, found := files[key]
		if key == "" || !found {
			p.add(where, "the config %s: %s holds no key for %q", configPath, what, name)
			return nil, "", false
		}
		return []byte(text), fmt.Sprintf("%s, %s, key %s", s.files[what], what, key), true
	}
	if configPath == imageCmd[2] {
		return configs.DefaultYAML, "the image's default config", true
	}
	p.add(where, "the config %s: no volume is mounted there", configPath)
	return nil, "", false
}

// checkProbe checks one probe: an HTTP GET of a route the daemon serves on the internal
// listener's port, or an exec of `cobrowse-connector health`.
func checkProbe(where, field string, pr *probe, c container, listen, listenPort string, p *problems) {
	switch {
	case pr.HTTPGet != nil:
		h := pr.HTTPGet
		if !slices.Contains(daemonRoutes, h.Path) {
			p.add(where, "%s.httpGet.path %q: the daemon serves %s", field, h.Path, strings.Join(daemonRoutes, ", "))
		}
		if field == "livenessProbe" && h.Path != livenessPath {
			p.add(where, "%s.httpGet.path %q: a liveness probe asks %s (%s fails while NATS is away; the daemon waits for it)", field, h.Path, livenessPath, h.Path)
		}
		if h.Scheme != "" && h.Scheme != "HTTP" {
			p.add(where, "%s.httpGet.scheme %q: the internal listener speaks plain HTTP", field, h.Scheme)
		}
		checkPort(where, field+".httpGet.port", h.Port, c, listen, listenPort, p)
	case pr.Exec != nil:
		cmd := pr.Exec.Command
		if len(cmd) < 2 || (cmd[0] != imageEntrypoint && cmd[0] != "cobrowse-connector") || cmd[1] != "health" {
			p.add(where, "%s.exec.command %q: the exec probe is `cobrowse-connector health`", field, cmd)
			return
		}
		configFlag(where, field+".exec.command", cmd[1:], p)
	case pr.TCPSocket != nil:
		checkPort(where, field+".tcpSocket.port", pr.TCPSocket.Port, c, listen, listenPort, p)
	default:
		p.add(where, "%s: the daemon answers HTTP probes and `cobrowse-connector health`", field)
	}
}

// checkPort: a probe's port (a number or a container port's name) is a containerPort whose number
// is http.listen's port.
func checkPort(where, field string, port yaml.Node, c container, listen, listenPort string, p *problems) {
	if listenPort == "" {
		p.add(where, "%s: http.listen is empty: the daemon has no internal listener to probe", field)
		return
	}
	want, _ := strconv.Atoi(listenPort)
	i := slices.IndexFunc(c.Ports, func(cp containerPort) bool {
		if n, err := strconv.Atoi(port.Value); err == nil && port.Tag == "!!int" {
			return cp.ContainerPort == n
		}
		return cp.Name == port.Value
	})
	switch {
	case i < 0:
		p.add(where, "%s %q: no containerPort of that name or number", field, port.Value)
	case c.Ports[i].ContainerPort != want:
		p.add(where, "%s %q: containerPort %d, but http.listen is %q (port %d)", field, port.Value, c.Ports[i].ContainerPort, listen, want)
	}
}

// checkSecurity: non-root, read-only root file system, no privilege escalation, every capability
// dropped, the runtime's default seccomp profile; the container's context over the pod's.
func checkSecurity(where string, sc, pod *securityContext, p *problems) {
	if sc == nil {
		sc = &securityContext{}
	}
	if pod == nil {
		pod = &securityContext{}
	}
	nonRoot := sc.RunAsNonRoot
	if nonRoot == nil {
		nonRoot = pod.RunAsNonRoot
	}
	if nonRoot == nil || !*nonRoot {
		p.add(where, "securityContext.runAsNonRoot: must be true (in the container's or the pod's)")
	}
	for _, u := range []*int64{sc.RunAsUser, pod.RunAsUser} {
		if u != nil && *u == 0 {
			p.add(where, "securityContext.runAsUser: 0 is root")
		}
	}
	if sc.Privileged != nil && *sc.Privileged {
		p.add(where, "securityContext.privileged: must not be true")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		p.add(where, "securityContext.readOnlyRootFilesystem: must be true")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		p.add(where, "securityContext.allowPrivilegeEscalation: must be false")
	}
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		p.add(where, "securityContext.capabilities.drop: must hold ALL")
	} else if len(sc.Capabilities.Add) > 0 {
		p.add(where, "securityContext.capabilities.add %q: the daemon needs none", sc.Capabilities.Add)
	}
	seccomp := sc.SeccompProfile
	if seccomp == nil {
		seccomp = pod.SeccompProfile
	}
	if seccomp == nil || seccomp.Type != "RuntimeDefault" {
		p.add(where, "securityContext.seccompProfile.type: must be RuntimeDefault (in the container's or the pod's)")
	}
}
