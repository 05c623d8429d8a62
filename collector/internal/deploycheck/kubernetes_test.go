package deploycheck

import (
	"fmt"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/llmtap/llmtap/collector/config"
)

const k8sDir = "deploy/kubernetes"

// object is one Kubernetes manifest document.
type object struct {
	file string
	doc  map[string]any
}

func (o object) kind() string { return getString(o.doc, "kind") }
func (o object) name() string { return getString(o.doc, "metadata", "name") }
func (o object) where() string {
	return fmt.Sprintf("%s: %s %s", o.file, o.kind(), o.name())
}

// manifests reads every manifest of deploy/kubernetes except the
// kustomization, checking that each document has apiVersion, kind and
// metadata.name.
func manifests(t *testing.T) []object {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot(t), k8sDir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("%s: no manifests (%v)", k8sDir, err)
	}
	var objs []object
	for _, f := range files {
		rel := k8sDir + "/" + filepath.Base(f)
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		for _, doc := range yamlDocs(t, rel, readFile(t, rel)) {
			o := object{file: rel, doc: doc}
			for _, k := range [][]string{{"apiVersion"}, {"kind"}, {"metadata", "name"}} {
				need(t, rel, doc, k...)
			}
			objs = append(objs, o)
		}
	}
	return objs
}

// find returns the only object of a kind, or fails.
func find(t *testing.T, objs []object, kind string) object {
	t.Helper()
	var found []object
	for _, o := range objs {
		if o.kind() == kind {
			found = append(found, o)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s: %d objects of kind %s, want 1", k8sDir, len(found), kind)
	}
	return found[0]
}

// TestKubernetesManifests: every manifest is in the kustomization (or
// named in its comments, as the optional ServiceMonitor is) and in its
// namespace, with its expected apiVersion, and every container image is
// pinned.
func TestKubernetesManifests(t *testing.T) {
	objs := manifests(t)
	kus := yamlFile(t, k8sDir+"/kustomization.yaml")
	ns := need(t, k8sDir+"/kustomization.yaml", kus, "namespace")
	kusText := string(readFile(t, k8sDir+"/kustomization.yaml"))
	listed := map[string]bool{}
	for _, r := range getList(kus, "resources") {
		listed[r.(string)] = true
		if _, err := os.Stat(filepath.Join(repoRoot(t), k8sDir, r.(string))); err != nil {
			t.Errorf("%s/kustomization.yaml: resources: %v", k8sDir, err)
		}
	}
	apiVersions := map[string]string{
		"Namespace":           "v1",
		"ConfigMap":           "v1",
		"Secret":              "v1",
		"Service":             "v1",
		"Deployment":          "apps/v1",
		"PodDisruptionBudget": "policy/v1",
		"Middleware":          "traefik.io/v1alpha1",
		"ServiceMonitor":      "monitoring.coreos.com/v1",
	}
	for _, kind := range []string{"Namespace", "ConfigMap", "Secret", "Deployment", "Service", "Middleware", "ServiceMonitor"} {
		find(t, objs, kind)
	}
	for _, o := range objs {
		base := path.Base(o.file)
		if !listed[base] && !regexp.MustCompile(`(?m)^\s*#\s*-\s*`+regexp.QuoteMeta(base)+`\s*$`).MatchString(kusText) {
			t.Errorf("%s: not in kustomization.yaml's resources", o.file)
		}
		want, ok := apiVersions[o.kind()]
		if !ok {
			t.Errorf("%s: kind %s: this test does not know it; add its checks", o.where(), o.kind())
		} else if got := getString(o.doc, "apiVersion"); got != want {
			t.Errorf("%s: apiVersion %s, want %s", o.where(), got, want)
		}
		if o.kind() == "Namespace" {
			if o.name() != ns {
				t.Errorf("%s: want the kustomization's namespace %s", o.where(), ns)
			}
		} else if got := getString(o.doc, "metadata", "namespace"); got != ns {
			t.Errorf("%s: metadata.namespace %q, want %s (so that kubectl apply -f works as -k does)", o.where(), got, ns)
		}
		for _, kind := range []string{"containers", "initContainers"} {
			for _, c := range getList(o.doc, "spec", "template", "spec", kind) {
				if err := checkPinned(getString(c, "image")); err != nil {
					t.Errorf("%s: %s %s: %v", o.where(), kind, getString(c, "name"), err)
				}
			}
		}
	}
}

// collectorPod gathers what the Deployment's checks need.
type collectorPod struct {
	t          *testing.T
	deploy     object
	spec       map[string]any // the pod's spec
	container  map[string]any
	configMap  object
	secret     object
	cfg        *config.Config
	configFile string // where the ConfigMap's configuration is, for messages
}

func loadCollectorPod(t *testing.T) *collectorPod {
	t.Helper()
	objs := manifests(t)
	p := &collectorPod{t: t, deploy: find(t, objs, "Deployment"), configMap: find(t, objs, "ConfigMap"), secret: find(t, objs, "Secret")}
	p.spec = getMap(p.deploy.doc, "spec", "template", "spec")
	cs := getList(p.spec, "containers")
	if len(cs) != 1 {
		t.Fatalf("%s: %d containers, want the collector alone", p.deploy.where(), len(cs))
	}
	p.container = getMap(cs[0])
	env := map[string]string{}
	for k, v := range getMap(p.secret.doc, "stringData") {
		env[k] = getString(map[string]any{"v": v}, "v")
	}
	key := ""
	for k := range getMap(p.configMap.doc, "data") {
		key = k
	}
	p.configFile = p.configMap.file + ": data." + key
	p.cfg = loadCollectorConfig(t, p.configFile, []byte(getString(p.configMap.doc, "data", key)), env)
	return p
}

// containerPort resolves a probe's or a Service's port (a name or a
// number) to the container's port number.
func (p *collectorPod) containerPort(ref string) string {
	for _, cp := range getList(p.container, "ports") {
		if getString(cp, "name") == ref || getString(cp, "containerPort") == ref {
			return getString(cp, "containerPort")
		}
	}
	return ""
}

// mountedAt is the volume mounted at dir in the container.
func (p *collectorPod) mountedAt(dir string) map[string]any {
	for _, m := range getList(p.container, "volumeMounts") {
		if getString(m, "mountPath") == dir {
			for _, v := range getList(p.spec, "volumes") {
				if getString(v, "name") == getString(m, "name") {
					return getMap(v)
				}
			}
		}
	}
	return nil
}

// TestKubernetesCollector: the Deployment runs the collector with the
// ConfigMap's configuration (which the collector loads with the Secret's
// values), on the port it listens on, probed on its real endpoints, with
// the Secret's keys as the variables it reads, hardened, with resources,
// a spool volume large enough, and time to drain on shutdown.
func TestKubernetesCollector(t *testing.T) {
	p := loadCollectorPod(t)
	dw := p.deploy.where()
	if n, _ := strconv.Atoi(getString(p.deploy.doc, "spec", "replicas")); n < 2 {
		t.Errorf("%s: spec.replicas %d: want at least 2", dw, n)
	}
	sel := getMap(p.deploy.doc, "spec", "selector", "matchLabels")
	labels := getMap(p.deploy.doc, "spec", "template", "metadata", "labels")
	for k, v := range sel {
		if labels[k] != v {
			t.Errorf("%s: spec.selector %s=%v does not match the pod's labels", dw, k, v)
		}
	}

	// Configuration: -config FILE from the ConfigMap's volume.
	args := getList(p.container, "args")
	if len(args) != 2 || args[0] != "-config" {
		t.Fatalf("%s: args %v: want [-config, FILE]", dw, args)
	}
	file := args[1].(string)
	v := p.mountedAt(path.Dir(file))
	if getString(v, "configMap", "name") != p.configMap.name() || get(p.configMap.doc, "data", path.Base(file)) == nil {
		t.Errorf("%s: -config %s: want ConfigMap %s mounted at %s with the key %s", dw, file, p.configMap.name(), path.Dir(file), path.Base(file))
	}

	// Port and probes.
	listen := port(t, p.configFile+": listen", p.cfg.Listen)
	if got := p.containerPort("http"); got != listen {
		t.Errorf("%s: container port http %q, want the ConfigMap's listen port %s", dw, got, listen)
	}
	for probe, want := range map[string]string{"startupProbe": "/healthz", "livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
		pr := getMap(p.container, probe, "httpGet")
		if pr == nil {
			t.Errorf("%s: no %s.httpGet", dw, probe)
			continue
		}
		if got := getString(pr, "path"); got != want {
			t.Errorf("%s: %s.httpGet.path %q, want %s (the collector's endpoint)", dw, probe, got, want)
		}
		if got := p.containerPort(getString(pr, "port")); got != listen {
			t.Errorf("%s: %s.httpGet.port %s is not the port the collector listens on (%s)", dw, probe, getString(pr, "port"), listen)
		}
	}

	// The Secret's keys are exactly the variables the Deployment reads from
	// it, each one the collector reads.
	fromSecret := map[string]bool{}
	var names []string
	for _, e := range getList(p.container, "env") {
		ref := getMap(e, "valueFrom", "secretKeyRef")
		if ref == nil {
			continue
		}
		name, key := getString(e, "name"), getString(ref, "key")
		names = append(names, name)
		if getString(ref, "name") != p.secret.name() {
			t.Errorf("%s: env %s: secretKeyRef.name %q, want %s", dw, name, getString(ref, "name"), p.secret.name())
		}
		if key != name {
			t.Errorf("%s: env %s: from key %s: name the key after the variable", dw, name, key)
		}
		fromSecret[key] = true
	}
	checkCollectorEnv(t, dw+": env", names)
	keys := sortedKeys(getMap(p.secret.doc, "stringData"))
	if !slices.Equal(keys, sortedKeys(fromSecret)) {
		t.Errorf("%s: stringData keys %v, but %s reads %v", p.secret.where(), keys, dw, sortedKeys(fromSecret))
	}
	for _, k := range []string{"LLMTAP_INGEST_TOKEN", "LLMTAP_ADMIN_TOKEN"} {
		if !fromSecret[k] {
			t.Errorf("%s: no %s from the Secret", dw, k)
		}
	}

	// Hardening.
	for _, f := range []struct {
		v    any
		want string
		name string
	}{
		{get(p.spec, "securityContext", "runAsNonRoot"), "true", "securityContext.runAsNonRoot"},
		{get(p.spec, "securityContext", "seccompProfile", "type"), "RuntimeDefault", "securityContext.seccompProfile.type"},
		{get(p.container, "securityContext", "allowPrivilegeEscalation"), "false", "containers[0].securityContext.allowPrivilegeEscalation"},
		{get(p.container, "securityContext", "readOnlyRootFilesystem"), "true", "containers[0].securityContext.readOnlyRootFilesystem"},
		{getList(p.container, "securityContext", "capabilities", "drop"), "[ALL]", "containers[0].securityContext.capabilities.drop"},
	} {
		if got := fmt.Sprint(f.v); got != f.want {
			t.Errorf("%s: %s is %s, want %s", dw, f.name, got, f.want)
		}
	}
	if u := getString(p.spec, "securityContext", "runAsUser"); u == "" || u == "0" {
		t.Errorf("%s: securityContext.runAsUser %q: want the image's user (65532)", dw, u)
	}
	for _, r := range []string{"requests.cpu", "requests.memory", "limits.memory"} {
		kind, res, _ := strings.Cut(r, ".")
		if getString(p.container, "resources", kind, res) == "" {
			t.Errorf("%s: no resources.%s", dw, r)
		}
	}

	// The spool: a volume at spool_dir, larger than spool_max_bytes.
	spool := p.mountedAt(p.cfg.ClickHouse.SpoolDir)
	if spool == nil {
		t.Errorf("%s: no volume at clickhouse.spool_dir %s (%s): the root filesystem is read-only", dw, p.cfg.ClickHouse.SpoolDir, p.configFile)
	} else if limit := getString(spool, "emptyDir", "sizeLimit"); limit != "" {
		n, err := quantity(limit)
		if err != nil || n <= int64(p.cfg.ClickHouse.SpoolMaxBytes) {
			t.Errorf("%s: volume %s: sizeLimit %s must exceed clickhouse.spool_max_bytes %s (%v)", dw, getString(spool, "name"), limit, p.cfg.ClickHouse.SpoolMaxBytes, err)
		}
	}

	// Shutdown: the preStop pause, then the drain within shutdown_timeout,
	// both inside the grace period.
	grace, _ := strconv.Atoi(getString(p.spec, "terminationGracePeriodSeconds"))
	pause, _ := strconv.Atoi(getString(p.container, "lifecycle", "preStop", "sleep", "seconds"))
	if pause == 0 {
		t.Errorf("%s: no lifecycle.preStop.sleep.seconds: the Service would still send records after SIGTERM", dw)
	}
	if need := time.Duration(pause)*time.Second + time.Duration(p.cfg.ShutdownTimeout); time.Duration(grace)*time.Second <= need {
		t.Errorf("%s: terminationGracePeriodSeconds %d must exceed preStop %ds + shutdown_timeout %s (%s)", dw, grace, pause, p.cfg.ShutdownTimeout, p.configFile)
	}
}

// TestKubernetesService: the Service selects the collector's pods and
// reaches the port they listen on; the PodDisruptionBudget and the
// ServiceMonitor select them too, and the ServiceMonitor's job (the
// Service's name) is the one deploy/prometheus names.
func TestKubernetesService(t *testing.T) {
	p := loadCollectorPod(t)
	objs := manifests(t)
	labels := getMap(p.deploy.doc, "spec", "template", "metadata", "labels")
	matches := func(sel map[string]any) bool {
		for k, v := range sel {
			if labels[k] != v {
				return false
			}
		}
		return len(sel) > 0
	}

	svc := find(t, objs, "Service")
	if !matches(getMap(svc.doc, "spec", "selector")) {
		t.Errorf("%s: spec.selector does not select the Deployment's pods", svc.where())
	}
	listen := port(t, p.configFile, p.cfg.Listen)
	portNames := map[string]bool{}
	for _, sp := range getList(svc.doc, "spec", "ports") {
		portNames[getString(sp, "name")] = true
		if got := p.containerPort(getString(sp, "targetPort")); got != listen {
			t.Errorf("%s: port %s: targetPort %s is not the collector's port %s", svc.where(), getString(sp, "name"), getString(sp, "targetPort"), listen)
		}
	}

	pdb := find(t, objs, "PodDisruptionBudget")
	if !matches(getMap(pdb.doc, "spec", "selector", "matchLabels")) {
		t.Errorf("%s: spec.selector does not select the Deployment's pods", pdb.where())
	}

	sm := find(t, objs, "ServiceMonitor")
	svcLabels := getMap(svc.doc, "metadata", "labels")
	for k, v := range getMap(sm.doc, "spec", "selector", "matchLabels") {
		if svcLabels[k] != v {
			t.Errorf("%s: spec.selector %s=%v does not select Service %s", sm.where(), k, v, svc.name())
		}
	}
	for _, ep := range getList(sm.doc, "spec", "endpoints") {
		if !portNames[getString(ep, "port")] || getString(ep, "path") != "/metrics" {
			t.Errorf("%s: endpoint port %q path %q: want a port of Service %s and /metrics", sm.where(), getString(ep, "port"), getString(ep, "path"), svc.name())
		}
	}
	jobs := map[string]bool{}
	for _, sc := range getList(yamlFile(t, "deploy/prometheus/prometheus.yml"), "scrape_configs") {
		jobs[getString(sc, "job_name")] = true
	}
	if getString(sm.doc, "spec", "jobLabel") == "" && !jobs[svc.name()] {
		t.Errorf("%s: the series get job=%q (the Service's name), which is no job of deploy/prometheus/prometheus.yml (%v), whose rules select it", sm.where(), svc.name(), sortedKeys(jobs))
	}
}

// urnSecret is Traefik's reference to a Secret in the Middleware's
// namespace: urn:k8s:secret:NAME:KEY.
var urnSecret = regexp.MustCompile(`^urn:k8s:secret:([^:]+):([^:]+)$`)

// TestKubernetesMiddleware: the Middleware's plugin options are the
// plugin's and pass its New (the Secret's values in place of the
// references to it), with limits on, the collector's Service as its URL
// and the collector's ingest token from the same Secret.
func TestKubernetesMiddleware(t *testing.T) {
	p := loadCollectorPod(t)
	objs := manifests(t)
	mw := find(t, objs, "Middleware")
	svc := find(t, objs, "Service")
	plugins := getMap(mw.doc, "spec", "plugin")
	if len(plugins) != 1 || plugins["llmtap"] == nil {
		t.Fatalf("%s: spec.plugin %v: want llmtap (the name in Traefik's static configuration)", mw.where(), sortedKeys(plugins))
	}
	opts := getMap(plugins, "llmtap")
	where := mw.where() + ": spec.plugin.llmtap"

	resolved := map[string]any{}
	for k, v := range opts {
		resolved[k] = v
		s, _ := v.(string)
		m := urnSecret.FindStringSubmatch(s)
		if m == nil {
			continue
		}
		val := get(p.secret.doc, "stringData", m[2])
		if m[1] != p.secret.name() || val == nil {
			t.Errorf("%s.%s: %s: no key %s in Secret %s (%s)", where, k, s, m[2], p.secret.name(), p.secret.file)
		}
		if getString(mw.doc, "metadata", "namespace") != getString(p.secret.doc, "metadata", "namespace") {
			t.Errorf("%s.%s: Traefik reads the Secret from the Middleware's namespace: keep both in one", where, k)
		}
		resolved[k] = val
	}
	checkPluginConfig(t, where, resolved, mw.name())
	if getString(opts, "limits", "enabled") != "true" {
		t.Errorf("%s.limits.enabled: want true", where)
	}
	if tok := getString(resolved, "collectorToken"); tok != p.cfg.IngestToken.Reveal() || tok == "" {
		t.Errorf("%s.collectorToken: not the collector's ingest token (%s)", where, p.secret.where())
	}
	u, err := url.Parse(getString(opts, "collectorURL"))
	ns := getString(svc.doc, "metadata", "namespace")
	host := svc.name() + "." + ns + ".svc"
	if err != nil || (u.Hostname() != host && u.Hostname() != host+".cluster.local") || !slices.ContainsFunc(getList(svc.doc, "spec", "ports"), func(sp any) bool { return getString(sp, "port") == u.Port() }) {
		t.Errorf("%s.collectorURL %s: want http://%s:PORT with a port of Service %s", where, getString(opts, "collectorURL"), host, svc.name())
	}
}

// quantity parses a Kubernetes quantity of bytes (2Gi, 512Mi, 1G, 1000).
func quantity(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{
		{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40},
		{"k", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12},
	}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("quantity %q: %w", s, err)
	}
	return n * mult, nil
}
