package deploycheck

import (
	"bufio"
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const dockerfile = "deploy/Dockerfile"

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper case: FROM, RUN, COPY, ...
	args string
	line int
}

// stage is a FROM and the instructions under it.
type stage struct {
	name, image string
	line        int
	inst        []instruction
}

// parseDockerfile reads the instructions of the file at rel (from the
// root), grouped into stages.
func parseDockerfile(t *testing.T, rel string) []*stage {
	t.Helper()
	var stages []*stage
	sc := bufio.NewScanner(bytes.NewReader(readFile(t, rel)))
	var cur strings.Builder
	start, n := 0, 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if cur.Len() == 0 {
			start = n
		}
		if strings.HasSuffix(line, `\`) {
			cur.WriteString(strings.TrimSuffix(line, `\`) + " ")
			continue
		}
		cur.WriteString(line)
		text := cur.String()
		cur.Reset()
		cmd, args, _ := strings.Cut(text, " ")
		in := instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args), line: start}
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			s := &stage{image: f[0], line: start}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				s.name = f[2]
			} else if len(f) != 1 {
				t.Fatalf("%s:%d: FROM %s: want IMAGE [AS NAME]", rel, start, in.args)
			}
			stages = append(stages, s)
			continue
		}
		if len(stages) == 0 {
			t.Fatalf("%s:%d: %s before the first FROM", rel, start, in.cmd)
		}
		s := stages[len(stages)-1]
		s.inst = append(s.inst, in)
	}
	if cur.Len() > 0 {
		t.Fatalf("%s: ends in a continuation line", rel)
	}
	return stages
}

// words splits a shell command line into words: quotes ('...', "...")
// and backslash escapes, no expansion.
func words(s string) ([]string, error) {
	var out []string
	var w strings.Builder
	inWord := false
	var quote rune
	escaped := false
	for _, r := range s {
		switch {
		case escaped:
			w.WriteRune(r)
			escaped = false
		case quote != 0:
			if r == quote {
				quote = 0
			} else if r == '\\' && quote == '"' {
				escaped = true
			} else {
				w.WriteRune(r)
			}
		case r == '\\':
			escaped, inWord = true, true
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ' || r == '\t':
			if inWord {
				out = append(out, w.String())
				w.Reset()
				inWord = false
			}
		default:
			w.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 || escaped {
		return nil, fmt.Errorf("unterminated quote or escape in %q", s)
	}
	if inWord {
		out = append(out, w.String())
	}
	return out, nil
}

// argList is an instruction's arguments: the JSON (exec) form, or words.
func argList(t *testing.T, in instruction) []string {
	t.Helper()
	if strings.HasPrefix(in.args, "[") {
		var l []string
		if err := json.Unmarshal([]byte(in.args), &l); err != nil {
			t.Fatalf("%s:%d: %s %s: not a JSON list of strings: %v", dockerfile, in.line, in.cmd, in.args, err)
		}
		return l
	}
	w, err := words(in.args)
	if err != nil {
		t.Fatalf("%s:%d: %v", dockerfile, in.line, err)
	}
	return w
}

// flags splits leading --name=value flags (COPY --from=, RUN --mount=)
// from the rest.
func flags(args []string) (map[string]string, []string) {
	f := map[string]string{}
	for len(args) > 0 && strings.HasPrefix(args[0], "--") {
		k, v, _ := strings.Cut(strings.TrimPrefix(args[0], "--"), "=")
		f[k] = v
		args = args[1:]
	}
	return f, args
}

// last returns the arguments of the stage's last instruction cmd.
func (s *stage) last(t *testing.T, cmd string) []string {
	t.Helper()
	var found []string
	for _, in := range s.inst {
		if in.cmd == cmd {
			found = argList(t, in)
		}
	}
	return found
}

// workdirs returns the WORKDIR in force at each instruction.
func (s *stage) workdirs() []string {
	dirs := make([]string, len(s.inst))
	wd := "/"
	for i, in := range s.inst {
		if in.cmd == "WORKDIR" && path.IsAbs(in.args) {
			wd = path.Clean(in.args)
		} else if in.cmd == "WORKDIR" {
			wd = path.Join(wd, in.args)
		}
		dirs[i] = wd
	}
	return dirs
}

// sourceStages are the stages other stages build on or copy from; the
// others are the images the Dockerfile produces.
func sourceStages(t *testing.T, stages []*stage) map[string]bool {
	used := map[string]bool{}
	for _, s := range stages {
		used[s.image] = true
		for _, in := range s.inst {
			if in.cmd == "COPY" {
				if f, _ := flags(argList(t, in)); f["from"] != "" {
					used[f["from"]] = true
				}
			}
		}
	}
	return used
}

// goBuild is one `go build` RUN line of the Dockerfile.
type goBuild struct {
	stage   *stage
	line    int
	env     []string // VAR=value before the command
	args    []string // after "go"
	workdir string   // WORKDIR in the image
	out     string   // the -o path in the image
	pkg     string
}

func goBuilds(t *testing.T, stages []*stage) []goBuild {
	t.Helper()
	var builds []goBuild
	for _, s := range stages {
		dirs := s.workdirs()
		for i, in := range s.inst {
			if in.cmd != "RUN" || !strings.Contains(in.args, "go build") {
				continue
			}
			_, w := flags(argList(t, in))
			if slices.ContainsFunc(w, func(x string) bool { return x == "&&" || x == ";" || x == "|" }) {
				t.Fatalf("%s:%d: keep each go build in a RUN of its own (the test runs the line as it is): %s", dockerfile, in.line, in.args)
			}
			b := goBuild{stage: s, line: in.line, workdir: dirs[i]}
			for len(w) > 0 && strings.Contains(w[0], "=") {
				b.env, w = append(b.env, w[0]), w[1:]
			}
			if len(w) < 3 || w[0] != "go" || w[1] != "build" {
				t.Fatalf("%s:%d: want [VAR=value ...] go build ...: %s", dockerfile, in.line, in.args)
			}
			b.args = w[1:]
			for j, a := range b.args {
				if a == "-o" && j+1 < len(b.args) {
					b.out = b.args[j+1]
				}
			}
			b.pkg = b.args[len(b.args)-1]
			if b.out == "" || !strings.HasPrefix(b.pkg, "./") {
				t.Fatalf("%s:%d: want -o PATH and a ./package last: %s", dockerfile, in.line, in.args)
			}
			builds = append(builds, b)
		}
	}
	return builds
}

// repoDir is the checkout's folder that holds what the build stage has
// at dir: the stage copies the context's go.mod into the folder that
// stands for the context's root.
func (b goBuild) repoDir(t *testing.T) string {
	t.Helper()
	dirs := b.stage.workdirs()
	for i, in := range b.stage.inst {
		if in.cmd != "COPY" {
			continue
		}
		f, w := flags(argList(t, in))
		if f["from"] != "" || len(w) != 2 || w[0] != "go.mod" {
			continue
		}
		ctxRoot := w[1]
		if strings.HasSuffix(ctxRoot, "/") || ctxRoot == "." {
			ctxRoot = path.Join(dirs[i], ctxRoot)
		} else {
			ctxRoot = path.Dir(path.Join(dirs[i], ctxRoot))
		}
		rel, ok := strings.CutPrefix(b.workdir, ctxRoot)
		if !ok {
			t.Fatalf("%s:%d: WORKDIR %s is outside %s, where the context's go.mod went", dockerfile, b.line, b.workdir, ctxRoot)
		}
		return filepath.Join(repoRoot(t), filepath.FromSlash(strings.TrimPrefix(rel, "/")))
	}
	t.Fatalf("%s: stage %s copies no go.mod from the context's root", dockerfile, b.stage.name)
	return ""
}

// TestDockerfileStages: multi-stage, every base image pinned, the Go
// image at collector/go.mod's go version, and every image it produces
// running as a user other than root.
func TestDockerfileStages(t *testing.T) {
	stages := parseDockerfile(t, dockerfile)
	if len(stages) < 2 {
		t.Fatalf("%s: %d stage(s): want a build stage and a runtime stage", dockerfile, len(stages))
	}
	names := map[string]bool{}
	for _, s := range stages {
		if names[s.image] {
			continue // built on an earlier stage
		}
		if err := checkPinned(s.image); err != nil {
			t.Errorf("%s:%d: FROM: %v", dockerfile, s.line, err)
		}
		if s.name != "" {
			names[s.name] = true
		}
	}

	want := goDirective(t, "collector/go.mod")
	wantV, err := versionParts(want)
	if err != nil {
		t.Fatal(err)
	}
	goImages := 0
	for _, s := range stages {
		repo, _, _ := strings.Cut(s.image, ":")
		if repo != "golang" {
			continue
		}
		goImages++
		tag := imageTag(s.image)
		v, _, _ := strings.Cut(tag, "-")
		got, err := versionParts(v)
		if err != nil || got[0] != wantV[0] || got[1] != wantV[1] || got[2] < wantV[2] {
			t.Errorf("%s:%d: FROM %s: want Go %d.%d.x at or above collector/go.mod's go %s", dockerfile, s.line, s.image, wantV[0], wantV[1], want)
		}
	}
	if goImages == 0 {
		t.Errorf("%s: no golang build stage", dockerfile)
	}

	used := sourceStages(t, stages)
	final := stages[len(stages)-1]
	if used[final.name] {
		t.Errorf("%s: the last stage (%s) is used by another stage: the default target must be the collector's image", dockerfile, final.name)
	}
	for _, s := range stages {
		if used[s.name] {
			continue
		}
		user := s.last(t, "USER")
		if len(user) != 1 {
			t.Errorf("%s:%d: stage %s is an image but sets no USER: it would run as root", dockerfile, s.line, s.name)
			continue
		}
		if u, _, _ := strings.Cut(user[0], ":"); u == "root" || u == "0" || u == "" {
			t.Errorf("%s:%d: stage %s: USER %s runs as root", dockerfile, s.line, s.name, user[0])
		}
		ep := s.last(t, "ENTRYPOINT")
		if len(ep) == 0 {
			t.Errorf("%s:%d: stage %s: no ENTRYPOINT", dockerfile, s.line, s.name)
		}
		// A listen address in the entrypoint is on an exposed port.
		for i, a := range ep {
			if a == "-addr" && i+1 < len(ep) {
				if p := port(t, dockerfile+": ENTRYPOINT -addr", ep[i+1]); !slices.Contains(s.last(t, "EXPOSE"), p) {
					t.Errorf("%s:%d: stage %s: ENTRYPOINT listens on %s, EXPOSE says %v", dockerfile, s.line, s.name, ep[i+1], s.last(t, "EXPOSE"))
				}
			}
		}
	}
}

// TestDockerfileCollectorImage: the collector's image starts the binary
// its build stage made, with its default configuration file (which the
// collector loads), listens on the port it exposes, and keeps its spool
// in a volume owned by the user it runs as.
func TestDockerfileCollectorImage(t *testing.T) {
	stages := parseDockerfile(t, dockerfile)
	final := stages[len(stages)-1]
	builds := goBuilds(t, stages)

	ep := final.last(t, "ENTRYPOINT")
	if len(ep) == 0 {
		t.Fatalf("%s: stage %s: no ENTRYPOINT", dockerfile, final.name)
	}
	// The entrypoint is a binary copied from a build stage's go build -o.
	var built *goBuild
	copies := map[string][]string{} // destination -> COPY words, from the context
	chowns := map[string]string{}   // destination -> COPY --chown
	cmd := final.last(t, "CMD")
	for _, in := range final.inst {
		if in.cmd != "COPY" {
			continue
		}
		f, w := flags(argList(t, in))
		if len(w) != 2 {
			t.Errorf("%s:%d: COPY %s: want one source and a destination", dockerfile, in.line, in.args)
			continue
		}
		chowns[w[1]] = f["chown"]
		if f["from"] == "" {
			copies[w[1]] = w
			continue
		}
		for i := range builds {
			if builds[i].stage.name == f["from"] && builds[i].out == w[0] && w[1] == ep[0] {
				built = &builds[i]
			}
		}
	}
	if built == nil || !strings.HasSuffix(built.pkg, "/llmtap-collector") {
		t.Errorf("%s: stage %s: ENTRYPOINT %v is not the collector built by a go build -o in a build stage", dockerfile, final.name, ep)
	}

	// CMD -config FILE, a file copied from the repository.
	if len(cmd) != 2 || cmd[0] != "-config" {
		t.Fatalf("%s: stage %s: CMD %v: want [\"-config\", FILE]", dockerfile, final.name, cmd)
	}
	src, ok := copies[cmd[1]]
	if !ok {
		t.Fatalf("%s: stage %s: CMD names %s, which no COPY puts there", dockerfile, final.name, cmd[1])
	}
	cfg := loadCollectorConfig(t, src[0], readFile(t, src[0]), nil)

	expose := final.last(t, "EXPOSE")
	if p := port(t, src[0]+": listen", cfg.Listen); !slices.Contains(expose, p) && !slices.Contains(expose, p+"/tcp") {
		t.Errorf("%s: stage %s: EXPOSE %v does not include the port of %s's listen (%s)", dockerfile, final.name, expose, src[0], cfg.Listen)
	}

	volume := final.last(t, "VOLUME")
	spool := cfg.ClickHouse.SpoolDir
	if !slices.Contains(volume, spool) {
		t.Errorf("%s: stage %s: VOLUME %v does not include %s's clickhouse.spool_dir (%s)", dockerfile, final.name, volume, src[0], spool)
	}
	user := final.last(t, "USER")
	if len(user) == 1 && chowns[spool] != user[0] {
		t.Errorf("%s: stage %s: want a COPY --chown=%s that creates the spool folder %s, owned by the image's user", dockerfile, final.name, user[0], spool)
	}
}

// TestDockerfileContext: every file the Dockerfile copies from the
// context exists and is let through by .dockerignore, which lists what
// the context holds (it starts with * and lets paths back in with !).
func TestDockerfileContext(t *testing.T) {
	root := repoRoot(t)
	var allowed []string
	sc := bufio.NewScanner(bytes.NewReader(readFile(t, ".dockerignore")))
	first := ""
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if first == "" {
			first = line
		}
		if p, ok := strings.CutPrefix(line, "!"); ok {
			allowed = append(allowed, strings.TrimSuffix(path.Clean(p), "/"))
		}
	}
	if first != "*" {
		t.Fatalf(".dockerignore: first pattern %q: want * (everything out, then ! for what the build needs)", first)
	}
	for _, s := range parseDockerfile(t, dockerfile) {
		for _, in := range s.inst {
			if in.cmd != "COPY" && in.cmd != "ADD" {
				continue
			}
			f, w := flags(argList(t, in))
			if f["from"] != "" {
				continue
			}
			for _, src := range w[:len(w)-1] {
				p := path.Clean(src)
				if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(p))); err != nil {
					t.Errorf("%s:%d: COPY %s: %v", dockerfile, in.line, src, err)
				}
				if !slices.ContainsFunc(allowed, func(a string) bool { return p == a || strings.HasPrefix(p, a+"/") }) {
					t.Errorf("%s:%d: COPY %s: left out of the context by .dockerignore (it lets in %v)", dockerfile, in.line, src, allowed)
				}
			}
		}
	}
}

// TestDockerfileBuildsStaticBinaries runs each go build line of the
// Dockerfile as it is written (its environment, flags and package, in the
// folder of the checkout its WORKDIR stands for, the output into a temp
// folder), and checks each binary: static (no program interpreter, no
// shared library), stripped, built with -trimpath and without cgo, so
// that it runs on the distroless base.
func TestDockerfileBuildsStaticBinaries(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the collector and the mock")
	}
	builds := goBuilds(t, parseDockerfile(t, dockerfile))
	if len(builds) == 0 {
		t.Fatalf("%s: no go build", dockerfile)
	}
	for _, b := range builds {
		t.Run(path.Base(b.out), func(t *testing.T) {
			t.Parallel()
			out := filepath.Join(t.TempDir(), path.Base(b.out))
			args := slices.Clone(b.args)
			for i := range args {
				if i > 0 && args[i-1] == "-o" {
					args[i] = out
				}
			}
			cmd := exec.Command("go", args...)
			cmd.Dir = b.repoDir(t)
			cmd.Env = append(os.Environ(), b.env...)
			if msg, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%s:%d: go %s (in %s): %v\n%s", dockerfile, b.line, strings.Join(args, " "), cmd.Dir, err, msg)
			}
			checkStatic(t, fmt.Sprintf("%s:%d: %s", dockerfile, b.line, b.out), out)
		})
	}
}

func checkStatic(t *testing.T, where, bin string) {
	t.Helper()
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s: dynamically linked (it has a PT_INTERP program header): it cannot run on distroless/static", where)
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
		t.Errorf("%s: needs shared libraries %v (%v)", where, libs, err)
	}
	if f.Section(".symtab") != nil {
		t.Errorf("%s: has a symbol table: want -ldflags \"-s -w\"", where)
	}
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatalf("%s: build info: %v", where, err)
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	for k, want := range map[string]string{"CGO_ENABLED": "0", "-trimpath": "true"} {
		if settings[k] != want {
			t.Errorf("%s: built with %s=%q, want %q", where, k, settings[k], want)
		}
	}
}
