package e2e

import (
	"debug/elf"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/parser"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/client-go/kubernetes/scheme"
)

// dockerStage is one FROM section of the Dockerfile.
type dockerStage struct {
	image, name string
	inst        []*parser.Node
}

// parseDockerfile parses the Dockerfile with BuildKit's parser, as `docker build` does.
func parseDockerfile(t *testing.T) []dockerStage {
	t.Helper()
	f, err := os.Open(filepath.Join(repoRoot(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := parser.Parse(f)
	if err != nil {
		t.Fatalf("parsing the Dockerfile: %v", err)
	}
	for _, w := range res.Warnings {
		line := 0
		if w.Location != nil {
			line = w.Location.Start.Line
		}
		t.Errorf("Dockerfile line %d: %s", line, w.Short)
	}
	var stages []dockerStage
	for _, n := range res.AST.Children {
		if instKind(n) == "from" {
			a := instArgs(n)
			s := dockerStage{image: a[0]}
			if len(a) == 3 && strings.EqualFold(a[1], "as") {
				s.name = a[2]
			}
			stages = append(stages, s)
			continue
		}
		if len(stages) == 0 {
			if instKind(n) != "arg" {
				t.Fatalf("Dockerfile line %d: %s before the first FROM", n.StartLine, n.Value)
			}
			continue
		}
		stages[len(stages)-1].inst = append(stages[len(stages)-1].inst, n)
	}
	return stages
}

// instKind is an instruction's keyword in lower case.
func instKind(n *parser.Node) string { return strings.ToLower(n.Value) }

func instArgs(n *parser.Node) []string {
	var v []string
	for x := n.Next; x != nil; x = x.Next {
		v = append(v, x.Value)
	}
	return v
}

// instFlag returns the value of an instruction flag such as --from, "" if absent.
func instFlag(n *parser.Node, name string) string {
	for _, f := range n.Flags {
		if v, ok := strings.CutPrefix(f, "--"+name+"="); ok {
			return v
		}
	}
	return ""
}

// all returns a stage's instructions of one kind (lower case: "copy", "run").
func (s dockerStage) all(kind string) []*parser.Node {
	var out []*parser.Node
	for _, n := range s.inst {
		if instKind(n) == kind {
			out = append(out, n)
		}
	}
	return out
}

// one returns the stage's only instruction of a kind.
func (s dockerStage) one(t *testing.T, kind string) *parser.Node {
	t.Helper()
	ns := s.all(kind)
	if len(ns) != 1 {
		t.Fatalf("stage %s: %d %s instructions, want 1", s.image, len(ns), strings.ToUpper(kind))
	}
	return ns[0]
}

// env returns the variables a stage sets with ENV and ARG defaults.
func (s dockerStage) env() map[string]string {
	env := map[string]string{}
	for _, n := range s.inst {
		switch instKind(n) {
		case "env":
			v := instArgs(n) // key, value, "=" triples
			for i := 0; i+1 < len(v); i += 3 {
				env[v[i]] = v[i+1]
			}
		case "arg":
			for _, a := range instArgs(n) {
				if k, v, ok := strings.Cut(a, "="); ok {
					env[k] = v
				}
			}
		}
	}
	return env
}

// baseDeployment decodes deploy/base/deployment.yaml as written.
func baseDeployment(t *testing.T) *appsv1.Deployment {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy/base/deployment.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var d appsv1.Deployment
	if _, _, err := scheme.Codecs.UniversalDeserializer().Decode(data, nil, &d); err != nil {
		t.Fatalf("decoding deploy/base/deployment.yaml: %v", err)
	}
	return &d
}

var goDirective = regexp.MustCompile(`(?m)^go (\d+)\.(\d+)(?:\.(\d+))?$`)

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// replayBuildStage runs the build stage's RUN commands on this machine, in a copy of the
// build context filtered by .dockerignore, with the stage's ENV and ARG defaults (the Go
// toolchain and module cache are this machine's). Every path under /out is redirected
// into the directory out; ctxDir is the copied context.
func replayBuildStage(t *testing.T, build dockerStage, goBuild string) (out, ctxDir string) {
	t.Helper()
	if !strings.Contains(goBuild, " /out/") {
		t.Fatalf("go build %q does not write under /out", goBuild)
	}
	root := repoRoot(t)
	tmp := t.TempDir()
	ctxDir, out = filepath.Join(tmp, "context"), filepath.Join(tmp, "out")
	ignored := dockerignore(t, root)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if rel == "." {
			return os.MkdirAll(ctxDir, 0o755)
		}
		if ignored(rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(ctxDir, rel), 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		return copyFileMode(path, filepath.Join(ctxDir, rel), 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	// The stage copies the context into its WORKDIR; run there.
	env := os.Environ()
	for k, v := range build.env() {
		env = append(env, k+"="+v) // later entries win
	}
	for _, n := range build.all("run") {
		cmd := strings.Join(instArgs(n), " ")
		cmd = strings.ReplaceAll(cmd, " /out/", " "+out+"/")
		sh := exec.Command("sh", "-c", cmd)
		sh.Dir, sh.Env = ctxDir, env
		if b, err := sh.CombinedOutput(); err != nil {
			t.Fatalf("Dockerfile line %d: RUN %s: %v\n%s", n.StartLine, cmd, err, b)
		}
	}
	return out, ctxDir
}

// checkStaticBinary: no program interpreter and no shared libraries, so the binary runs
// on distroless/static, which has no libc.
func checkStaticBinary(t *testing.T, path string) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("%s is dynamically linked (%v)", path, p.Type)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("%s needs shared libraries %v", path, libs)
	}
}

// dockerignore returns a matcher for the repository's .dockerignore with the semantics
// of Docker's pattern matcher for the forms it uses: paths relative to the context root,
// * and ? within one path element, ** across elements, and a match on a directory
// excludes what is under it. Exceptions (!) are not used and not supported.
func dockerignore(t *testing.T, root string) func(rel string) bool {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	var res []*regexp.Regexp
	for _, l := range strings.Split(string(data), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if strings.HasPrefix(l, "!") {
			t.Fatalf(".dockerignore exception %q: not supported by this test", l)
		}
		p := strings.TrimPrefix(filepath.Clean(l), "/")
		var re strings.Builder
		re.WriteString("^")
		for i := 0; i < len(p); i++ {
			switch {
			case strings.HasPrefix(p[i:], "**/"):
				re.WriteString("(.*/)?")
				i += 2
			case strings.HasPrefix(p[i:], "**"):
				re.WriteString(".*")
				i++
			case p[i] == '*':
				re.WriteString("[^/]*")
			case p[i] == '?':
				re.WriteString("[^/]")
			default:
				re.WriteString(regexp.QuoteMeta(p[i : i+1]))
			}
		}
		re.WriteString("$")
		res = append(res, regexp.MustCompile(re.String()))
	}
	return func(rel string) bool {
		rel = filepath.ToSlash(rel)
		for _, re := range res {
			if re.MatchString(rel) {
				return true
			}
		}
		return false
	}
}
