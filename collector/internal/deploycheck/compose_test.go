package deploycheck

import (
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const (
	composeDir  = "deploy/compose"
	composeFile = composeDir + "/compose.yml"
)

// composeVar is ${VAR}, ${VAR:-default} or ${VAR-default} in compose.yml.
var composeVar = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}`)

// interpolate resolves compose.yml's variables with nothing set: the
// defaults, as `docker compose up` in a bare environment does.
func interpolate(s string) string {
	s = composeVar.ReplaceAllString(s, "$2")
	return strings.ReplaceAll(s, "$$", "$")
}

// composeStack is compose.yml, parsed, with helpers over its services.
type composeStack struct {
	t        *testing.T
	root     string
	services map[string]any
	volumes  map[string]any
}

func loadCompose(t *testing.T) *composeStack {
	t.Helper()
	doc := yamlFile(t, composeFile)
	c := &composeStack{t: t, root: repoRoot(t), services: getMap(doc, "services"), volumes: getMap(doc, "volumes")}
	if len(c.services) == 0 {
		t.Fatalf("%s: no services", composeFile)
	}
	return c
}

// service returns the named service or fails.
func (c *composeStack) service(name string) map[string]any {
	c.t.Helper()
	s := getMap(c.services, name)
	if s == nil {
		c.t.Fatalf("%s: no service %s (services: %v)", composeFile, name, sortedKeys(c.services))
	}
	return s
}

// env is a service's environment, interpolated.
func (c *composeStack) env(name string) map[string]string {
	env := map[string]string{}
	switch e := get(c.services, name, "environment").(type) {
	case map[string]any:
		for k, v := range e {
			env[k] = interpolate(getString(map[string]any{"v": v}, "v"))
		}
	case []any:
		for _, kv := range e {
			k, v, _ := strings.Cut(getString(map[string]any{"v": kv}, "v"), "=")
			env[k] = interpolate(v)
		}
	}
	return env
}

// mount is a service's volume: a bind mount (source is a host path, made
// absolute) or a named volume.
type mount struct {
	source, target string
	bind           bool
}

func (c *composeStack) mounts(name string) []mount {
	c.t.Helper()
	var ms []mount
	for _, v := range getList(c.services, name, "volumes") {
		var m mount
		if s, ok := v.(string); ok {
			parts := strings.Split(s, ":")
			if len(parts) < 2 || len(parts) > 3 {
				c.t.Fatalf("%s: services.%s.volumes: %q: want SOURCE:TARGET[:MODE]", composeFile, name, s)
			}
			m.source, m.target = parts[0], parts[1]
		} else {
			m.source, m.target = getString(v, "source"), getString(v, "target")
		}
		if strings.HasPrefix(m.source, ".") || strings.HasPrefix(m.source, "/") {
			m.bind = true
			m.source = filepath.Join(c.root, filepath.FromSlash(composeDir), filepath.FromSlash(m.source))
		}
		ms = append(ms, m)
	}
	return ms
}

// hostPath is the file a service sees at p through its bind mounts.
func (c *composeStack) hostPath(name, p string) (string, bool) {
	best, host := "", ""
	for _, m := range c.mounts(name) {
		if !m.bind {
			continue
		}
		if (p == m.target || strings.HasPrefix(p, m.target+"/")) && len(m.target) > len(best) {
			best = m.target
			host = filepath.Join(m.source, filepath.FromSlash(strings.TrimPrefix(p, m.target)))
		}
	}
	return host, best != ""
}

// hostFile is hostPath for a file that must exist; it returns its
// path from the repository's root.
func (c *composeStack) hostFile(name, p, why string) string {
	c.t.Helper()
	host, ok := c.hostPath(name, p)
	if !ok {
		c.t.Fatalf("%s: services.%s: no bind mount provides %s (%s)", composeFile, name, p, why)
	}
	if _, err := os.Stat(host); err != nil {
		c.t.Fatalf("%s: services.%s: %s (%s): %v", composeFile, name, p, why, err)
	}
	rel, err := filepath.Rel(c.root, host)
	if err != nil {
		c.t.Fatal(err)
	}
	return filepath.ToSlash(rel)
}

// publishedPorts are the container ports a service publishes.
func (c *composeStack) publishedPorts(name string) []string {
	var ps []string
	for _, p := range getList(c.services, name, "ports") {
		s := getString(map[string]any{"v": p}, "v")
		parts := strings.Split(s, ":")
		ps = append(ps, strings.TrimSuffix(parts[len(parts)-1], "/tcp"))
	}
	return ps
}

// builtTarget is the Dockerfile target a service is built from, or "".
func (c *composeStack) builtTarget(name string) string {
	return getString(c.services, name, "build", "target")
}

// serviceByTarget is the service built from the Dockerfile's target.
func (c *composeStack) serviceByTarget(target string) string {
	c.t.Helper()
	for _, name := range sortedKeys(c.services) {
		if c.builtTarget(name) == target {
			return name
		}
	}
	c.t.Fatalf("%s: no service is built with target %s", composeFile, target)
	return ""
}

// TestComposeServices: the stack has its parts; every image is pinned and
// every built one comes from the Dockerfile; ports are published on
// loopback only; every mounted file exists; named volumes are declared;
// dependencies wait for healthchecks that exist.
func TestComposeServices(t *testing.T) {
	c := loadCompose(t)
	stages := map[string]bool{}
	for _, s := range parseDockerfile(t, dockerfile) {
		stages[s.name] = true
	}
	for _, name := range []string{"traefik", "llmtap-collector", "clickhouse", "redis", "prometheus", "grafana"} {
		c.service(name)
	}
	for _, name := range sortedKeys(c.services) {
		where := composeFile + ": services." + name
		s := c.services[name]
		image := getString(s, "image")
		if build := get(s, "build"); build != nil {
			ctx := need(t, composeFile, s, "build", "context")
			df := filepath.Join(c.root, composeDir, ctx, need(t, composeFile, s, "build", "dockerfile"))
			if rel, _ := filepath.Rel(c.root, df); filepath.ToSlash(rel) != dockerfile {
				t.Errorf("%s.build: dockerfile %s: want %s with the repository's root as context", where, rel, dockerfile)
			}
			if target := getString(s, "build", "target"); !stages[target] {
				t.Errorf("%s.build.target %q: not a stage of %s", where, target, dockerfile)
			}
		} else if err := checkPinned(image); err != nil {
			t.Errorf("%s.image: %v", where, err)
		} else if get(s, "healthcheck", "test") == nil {
			t.Errorf("%s: no healthcheck (only the distroless images built here, without a shell, go without)", where)
		}
		if image != "" && get(s, "build") != nil {
			t.Errorf("%s: both image and build", where)
		}

		for _, p := range getList(s, "ports") {
			ps, ok := p.(string)
			if !ok || !strings.HasPrefix(ps, "127.0.0.1:") || strings.Count(ps, ":") != 2 {
				t.Errorf("%s.ports: %v: publish on loopback only (127.0.0.1:HOST:CONTAINER)", where, p)
			}
		}
		for _, m := range c.mounts(name) {
			if m.bind {
				if _, err := os.Stat(m.source); err != nil {
					t.Errorf("%s.volumes: %s: %v", where, m.target, err)
				}
			} else if _, ok := c.volumes[m.source]; !ok {
				t.Errorf("%s.volumes: named volume %s is not declared under volumes", where, m.source)
			}
		}
		for dep, cond := range getMap(s, "depends_on") {
			if c.services[dep] == nil {
				t.Errorf("%s.depends_on: no service %s", where, dep)
			}
			if getString(cond, "condition") == "service_healthy" && get(c.services, dep, "healthcheck", "test") == nil {
				t.Errorf("%s.depends_on.%s: service_healthy, but %s has no healthcheck", where, dep, dep)
			}
		}
	}
}

// TestComposeCollector: the collector loads its mounted configuration
// with the service's environment, reads every variable it is given, keeps
// its spool on a volume, reaches ClickHouse and Redis by their service
// names with the ClickHouse user the clickhouse service creates, and
// publishes the port it listens on.
func TestComposeCollector(t *testing.T) {
	c := loadCompose(t)
	name := c.serviceByTarget("collector")
	if name != "llmtap-collector" {
		t.Errorf("%s: the collector's service is %s: name it llmtap-collector, the host the plugins and deploy/prometheus/prometheus.yml use", composeFile, name)
	}
	where := composeFile + ": services." + name
	cmd := getList(c.services, name, "command")
	if len(cmd) != 2 || cmd[0] != "-config" {
		t.Fatalf("%s.command %v: want [-config, FILE]", where, cmd)
	}
	file := c.hostFile(name, cmd[1].(string), "the configuration file")
	env := c.env(name)
	checkCollectorEnv(t, where+".environment", sortedKeys(env))
	cfg := loadCollectorConfig(t, file, readFile(t, file), env)

	if p := port(t, file+": listen", cfg.Listen); !slices.Contains(c.publishedPorts(name), p) {
		t.Errorf("%s.ports %v: the collector listens on %s (%s)", where, c.publishedPorts(name), p, file)
	}
	spool := false
	for _, m := range c.mounts(name) {
		spool = spool || (!m.bind && m.target == cfg.ClickHouse.SpoolDir)
	}
	if !spool {
		t.Errorf("%s.volumes: no named volume at clickhouse.spool_dir %s (%s): spooled batches would die with the container", where, cfg.ClickHouse.SpoolDir, file)
	}
	for field, addr := range map[string]string{"clickhouse.addr": cfg.ClickHouse.Addr, "redis.addr": cfg.Redis.Addr} {
		host, _, _ := strings.Cut(addr, ":")
		if c.services[host] == nil {
			t.Errorf("%s: %s %s: no service %s in %s", file, field, addr, host, composeFile)
		}
	}
	ch := c.env("clickhouse")
	if cfg.ClickHouse.Username != ch["CLICKHOUSE_USER"] || cfg.ClickHouse.Password.Reveal() != ch["CLICKHOUSE_PASSWORD"] {
		t.Errorf("%s: clickhouse.username and LLMTAP_CLICKHOUSE_PASSWORD must be the user and password the clickhouse service creates (CLICKHOUSE_USER, CLICKHOUSE_PASSWORD)", where)
	}
}

// TestComposeTraefik: Traefik finds its static configuration, the plugin
// laid out in plugins-local as a local plugin (manifest, go.mod and the
// package the manifest imports), and its dynamic configuration; every
// llmtap middleware's options are the plugin's and pass its New; the
// collector's URL, the ingest token and the upstreams agree with the rest
// of the stack.
func TestComposeTraefik(t *testing.T) {
	c := loadCompose(t)
	const name = "traefik"
	where := composeFile + ": services." + name
	image := getString(c.services, name, "image")
	m := regexp.MustCompile(`(?m)^require github.com/traefik/traefik/v3 (\S+)$`).FindSubmatch(readFile(t, "tools/traefik/go.mod"))
	if m == nil {
		t.Fatal("tools/traefik/go.mod: no require of github.com/traefik/traefik/v3")
	}
	if want := string(m[1]); imageTag(image) != want {
		t.Errorf("%s.image %s: want the Traefik version the tests run, %s (tools/traefik/go.mod)", where, image, want)
	}

	staticFile := c.hostFile(name, "/etc/traefik/traefik.yml", "Traefik's static configuration")
	static := yamlFile(t, staticFile)
	if slices.Contains(getList(c.services, name, "healthcheck", "test"), "--ping") && get(static, "ping") == nil {
		t.Errorf("%s: the healthcheck asks --ping, which needs ping in the static configuration", staticFile)
	}
	web := need(t, staticFile, static, "entryPoints", "web", "address")
	if p := strings.TrimPrefix(web, ":"); !slices.Contains(c.publishedPorts(name), p) {
		t.Errorf("%s.ports %v: want the web entry point's port (%s: %s)", where, c.publishedPorts(name), staticFile, web)
	}

	// Local plugins: ./plugins-local/src/<moduleName> from the working folder.
	wd := getString(c.services, name, "working_dir")
	if !path.IsAbs(wd) {
		t.Fatalf("%s.working_dir %q: set it, since Traefik finds plugins-local relative to it", where, wd)
	}
	plugins := getMap(static, "experimental", "localPlugins")
	if len(plugins) == 0 {
		t.Fatalf("%s: no experimental.localPlugins", staticFile)
	}
	for alias := range plugins {
		module := need(t, staticFile, static, "experimental", "localPlugins", alias, "moduleName")
		dir := path.Join(wd, "plugins-local/src", module)
		manifestFile := c.hostFile(name, dir+"/.traefik.yml", "the plugin's manifest")
		c.hostFile(name, dir+"/go.mod", "the plugin's go.mod")
		manifest := yamlFile(t, manifestFile)
		imp := need(t, manifestFile, manifest, "import")
		pkg, ok := strings.CutPrefix(imp, module)
		if !ok {
			t.Fatalf("%s: import %s is not in module %s", manifestFile, imp, module)
		}
		pkgDir := c.hostFile(name, dir+pkg, "the plugin's package "+imp)
		if gos, _ := filepath.Glob(filepath.Join(c.root, pkgDir, "*.go")); len(gos) == 0 {
			t.Errorf("%s: %s: no Go files", where, pkgDir)
		}
	}

	dynFile := c.hostFile(name, need(t, staticFile, static, "providers", "file", "filename"), "the dynamic configuration")
	checkComposeDynamic(t, c, dynFile, plugins)
}

// envTemplate is the file provider's {{ env "NAME" }}.
var envTemplate = regexp.MustCompile(`\{\{\s*env\s+"([A-Za-z_][A-Za-z0-9_]*)"\s*\}\}`)

func checkComposeDynamic(t *testing.T, c *composeStack, dynFile string, plugins map[string]any) {
	t.Helper()
	traefikEnv := c.env("traefik")
	text := string(readFile(t, dynFile))
	for _, m := range envTemplate.FindAllStringSubmatch(text, -1) {
		if _, ok := traefikEnv[m[1]]; !ok {
			t.Errorf("%s: {{ env %q }}: not in the traefik service's environment", dynFile, m[1])
		}
	}
	text = envTemplate.ReplaceAllStringFunc(text, func(s string) string {
		return traefikEnv[envTemplate.FindStringSubmatch(s)[1]]
	})
	dyn := yamlDocs(t, dynFile, []byte(text))[0]

	collector := c.serviceByTarget("collector")
	collectorCmd := getList(c.services, collector, "command")
	collectorFile := c.hostFile(collector, collectorCmd[len(collectorCmd)-1].(string), "the configuration file")
	collectorEnv := c.env(collector)
	cfg := loadCollectorConfig(t, collectorFile, readFile(t, collectorFile), collectorEnv)

	middlewares := getMap(dyn, "http", "middlewares")
	limited := 0
	for _, mw := range sortedKeys(middlewares) {
		for alias, opts := range getMap(middlewares, mw, "plugin") {
			where := dynFile + ": http.middlewares." + mw + ".plugin." + alias
			if plugins[alias] == nil {
				t.Errorf("%s: plugin %s is not declared in the static configuration", where, alias)
				continue
			}
			o := getMap(opts)
			checkPluginConfig(t, where, o, mw)
			if getString(o, "limits", "enabled") == "true" {
				limited++
			}
			u, err := url.Parse(getString(o, "collectorURL"))
			if err != nil || u.Hostname() != collector || u.Port() != port(t, collectorFile, cfg.Listen) {
				t.Errorf("%s.collectorURL %s: want http://%s:%s (the collector's service and listen port)", where, getString(o, "collectorURL"), collector, port(t, collectorFile, cfg.Listen))
			}
			if tok := getString(o, "collectorToken"); tok != cfg.IngestToken.Reveal() {
				t.Errorf("%s.collectorToken: not the collector's ingest token (set both from LLMTAP_INGEST_TOKEN)", where)
			}
		}
	}
	if limited == 0 {
		t.Errorf("%s: no llmtap middleware has limits.enabled: true", dynFile)
	}

	services := getMap(dyn, "http", "services")
	routers := getMap(dyn, "http", "routers")
	if len(routers) == 0 {
		t.Errorf("%s: no routers", dynFile)
	}
	for _, r := range sortedKeys(routers) {
		where := dynFile + ": http.routers." + r
		if s := getString(routers, r, "service"); services[s] == nil {
			t.Errorf("%s.service %s: not under http.services", where, s)
		}
		for _, m := range getList(routers, r, "middlewares") {
			if middlewares[m.(string)] == nil {
				t.Errorf("%s.middlewares: %s is not under http.middlewares", where, m)
			}
		}
	}
	// Upstreams in the stack: a service's host and its exposed port.
	mockPort := ""
	for _, s := range parseDockerfile(t, dockerfile) {
		if s.name == c.builtTarget("mock") {
			if e := s.last(t, "EXPOSE"); len(e) == 1 {
				mockPort = e[0]
			}
		}
	}
	for _, s := range sortedKeys(services) {
		for _, srv := range getList(services, s, "loadBalancer", "servers") {
			u, err := url.Parse(getString(srv, "url"))
			where := dynFile + ": http.services." + s + ".loadBalancer.servers"
			if err != nil || c.services[u.Hostname()] == nil {
				t.Errorf("%s: %s: not a service of %s", where, getString(srv, "url"), composeFile)
			} else if c.builtTarget(u.Hostname()) == "mock" && u.Port() != mockPort {
				t.Errorf("%s: %s: the mock listens on %s (%s, EXPOSE)", where, u, mockPort, dockerfile)
			}
		}
	}
}

// TestComposeMonitoring: Prometheus loads deploy/prometheus (its
// configuration and the rule files it names) and scrapes the collector's
// service on its port; Grafana gets the repository's provisioning files,
// the dashboards where its provider reads them, and the datasources the
// dashboards use (checkComposeGrafana).
func TestComposeMonitoring(t *testing.T) {
	c := loadCompose(t)
	collector := c.serviceByTarget("collector")
	collectorCmd := getList(c.services, collector, "command")
	collectorFile := c.hostFile(collector, collectorCmd[len(collectorCmd)-1].(string), "the configuration file")
	cfg := loadCollectorConfig(t, collectorFile, readFile(t, collectorFile), c.env(collector))

	const prom = "prometheus"
	configPath := ""
	for _, a := range getList(c.services, prom, "command") {
		if p, ok := strings.CutPrefix(a.(string), "--config.file="); ok {
			configPath = p
		}
	}
	if configPath == "" {
		t.Fatalf("%s: services.%s.command: no --config.file", composeFile, prom)
	}
	promFile := c.hostFile(prom, configPath, "Prometheus's configuration")
	pc := yamlFile(t, promFile)
	for _, rf := range getList(pc, "rule_files") {
		c.hostFile(prom, path.Join(path.Dir(configPath), rf.(string)), "a rule file "+promFile+" names")
	}
	want := collector + ":" + port(t, collectorFile, cfg.Listen)
	scraped := false
	for _, sc := range getList(pc, "scrape_configs") {
		for _, st := range getList(sc, "static_configs") {
			for _, target := range getList(st, "targets") {
				scraped = scraped || target == want
			}
		}
	}
	if !scraped {
		t.Errorf("%s: no static target %s (the collector's service and port in %s)", promFile, want, composeFile)
	}

	checkComposeGrafana(t, c)
}

// checkComposeGrafana: every provisioning file of the repository is
// mounted; the dashboard providers read folders that hold the dashboards;
// every datasource type the dashboards use is provisioned, reaches its
// compose service, and, when it is not built into Grafana, is installed
// at a pinned version.
func checkComposeGrafana(t *testing.T, c *composeStack) {
	t.Helper()
	const name = "grafana"
	where := composeFile + ": services." + name
	const prov = "/etc/grafana/provisioning"
	repoProv, _ := filepath.Glob(filepath.Join(c.root, "grafana", "provisioning", "*", "*.yml"))
	if len(repoProv) == 0 {
		t.Fatalf("grafana/provisioning: no provisioning files")
	}
	mounted := map[string]string{} // host file -> target
	for _, m := range c.mounts(name) {
		if m.bind && strings.HasPrefix(m.target, prov+"/") {
			mounted[m.source] = m.target
		}
	}
	for _, f := range repoProv {
		sub := filepath.Base(filepath.Dir(f))
		if target, ok := mounted[f]; !ok || path.Dir(target) != prov+"/"+sub {
			rel, _ := filepath.Rel(c.root, f)
			t.Errorf("%s.volumes: %s is not mounted in %s/%s", where, rel, prov, sub)
		}
	}

	// What the dashboards need: a datasource of each type they name.
	needTypes := map[string]bool{}
	boards, _ := filepath.Glob(filepath.Join(c.root, "grafana", "*.json"))
	for _, b := range boards {
		rel, _ := filepath.Rel(c.root, b)
		var walk func(v any)
		walk = func(v any) {
			switch x := v.(type) {
			case map[string]any:
				if ds := getString(x, "datasource", "type"); ds != "" && ds != "grafana" && ds != "datasource" {
					needTypes[ds] = true
				}
				if getString(x, "type") == "datasource" && getString(x, "query") != "" {
					needTypes[getString(x, "query")] = true
				}
				for _, e := range x {
					walk(e)
				}
			case []any:
				for _, e := range x {
					walk(e)
				}
			}
		}
		walk(yamlDocs(t, filepath.ToSlash(rel), readFile(t, filepath.ToSlash(rel)))[0])
	}

	env := c.env(name)
	chEnv := c.env("clickhouse")
	haveTypes := map[string]bool{}
	for host, target := range mounted {
		rel, _ := filepath.Rel(c.root, host)
		rel = filepath.ToSlash(rel)
		doc := yamlFile(t, rel)
		switch path.Base(path.Dir(target)) {
		case "dashboards":
			for _, p := range getList(doc, "providers") {
				dir := c.hostFile(name, need(t, rel, p, "options", "path"), "the dashboards of provider "+getString(p, "name"))
				if js, _ := filepath.Glob(filepath.Join(c.root, dir, "*.json")); len(js) == 0 {
					t.Errorf("%s: provider %s reads %s, which holds no dashboard", rel, getString(p, "name"), dir)
				}
			}
		case "datasources":
			for _, ds := range getList(doc, "datasources") {
				typ := getString(ds, "type")
				haveTypes[typ] = true
				dsWhere := rel + ": datasource " + getString(ds, "name")
				switch typ {
				case "prometheus":
					u, err := url.Parse(getString(ds, "url"))
					if err != nil || u.Hostname() != "prometheus" || u.Port() != "9090" {
						t.Errorf("%s: url %s: want http://prometheus:9090 (the Prometheus service)", dsWhere, getString(ds, "url"))
					}
				case "grafana-clickhouse-datasource":
					host, p := getString(ds, "jsonData", "host"), getString(ds, "jsonData", "port")
					if c.services[host] == nil || p != "9000" || getString(ds, "jsonData", "protocol") != "native" {
						t.Errorf("%s: %s:%s over %s: want the native protocol of a compose service on 9000", dsWhere, host, p, getString(ds, "jsonData", "protocol"))
					}
					if u := getString(ds, "jsonData", "username"); u != chEnv["CLICKHOUSE_USER"] {
						t.Errorf("%s: username %q, want the clickhouse service's CLICKHOUSE_USER %q", dsWhere, u, chEnv["CLICKHOUSE_USER"])
					}
					pw := strings.Trim(getString(ds, "secureJsonData", "password"), "${}")
					if v, ok := env[pw]; !ok || v != chEnv["CLICKHOUSE_PASSWORD"] {
						t.Errorf("%s: password: want $VAR with VAR in %s.environment, equal to the clickhouse service's CLICKHOUSE_PASSWORD", dsWhere, where)
					}
				default:
					t.Errorf("%s: type %s: this test does not know it; add its checks", dsWhere, typ)
				}
			}
		}
	}
	builtin := map[string]bool{"prometheus": true}
	for _, typ := range sortedKeys(needTypes) {
		if !haveTypes[typ] {
			t.Errorf("%s: the dashboards use a %s datasource, which none of the mounted provisioning files provides", where, typ)
		}
		if builtin[typ] {
			continue
		}
		installed := false
		for _, p := range strings.Split(env["GF_INSTALL_PLUGINS"], ",") {
			f := strings.Fields(p)
			installed = installed || (len(f) == 2 && f[0] == typ)
		}
		if !installed {
			t.Errorf("%s.environment.GF_INSTALL_PLUGINS %q: want %q with a pinned version (the dashboards use it)", where, env["GF_INSTALL_PLUGINS"], typ+" VERSION")
		}
	}
}
