package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
)

// goBench is one benchmark's medians over the -count runs.
type goBench struct {
	Package string             `json:"package"`
	Name    string             `json:"name"` // without the -GOMAXPROCS suffix
	Runs    int                `json:"runs"`
	Metrics map[string]float64 `json:"metrics"` // unit → median, e.g. "ns/op", "allocs/line"
}

// perLine returns the benchmark's ns and allocs per line: the ns/line and allocs/line it
// reports, or else ns/op and allocs/op (benchmarks whose op is one line).
func (g *goBench) perLine() (ns, allocs float64) {
	ns, ok := g.Metrics["ns/line"]
	if !ok {
		ns = g.Metrics["ns/op"]
	}
	allocs, ok = g.Metrics["allocs/line"]
	if !ok {
		allocs = g.Metrics["allocs/op"]
	}
	return ns, allocs
}

type goResult struct {
	Command    string     `json:"command"`
	Benchmarks []*goBench `json:"benchmarks"`
}

func (r *goResult) find(pkg, name string) *goBench {
	for _, b := range r.Benchmarks {
		if strings.HasSuffix(b.Package, "/"+pkg) && b.Name == name {
			return b
		}
	}
	return nil
}

// goBenchPattern selects the line-path benchmarks of collector and sink; of
// BenchmarkWriteLine only the kinds of line the others leave out, in the two text formats
// that differ most. (go test splits the pattern at top-level | and /, level by level.)
const goBenchPattern = "^BenchmarkParseLine$|^BenchmarkSplitLines$|^BenchmarkSkipper$|^BenchmarkReadLoop$|^BenchmarkReadLoopReplay$|" +
	"^BenchmarkWrite(Timestamped|JSON|Raw)$|^BenchmarkEncode|^BenchmarkWriteLine$/^(timestamped|json)$/^(jsonlog|4KiB)$"

func runGoBench(ctx context.Context, cfg *config) (*goResult, error) {
	args := []string{"test", "-run", "^$", "-bench", goBenchPattern, "-benchmem", "-benchtime", "500ms", "-count", strconv.Itoa(cfg.benchCount), "./collector", "./sink"}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = cfg.repo
	var out bytes.Buffer
	cmd.Stdout = &out
	var stderr tailBuffer
	cmd.Stderr = &stderr
	res := &goResult{Command: "go " + strings.Join(args, " ")}
	cfg.progress("go: %s", res.Command)
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s: %w\n%s%s", res.Command, err, lastLines(out.String(), 30), stderr.String())
	}
	res.Benchmarks = parseGoBench(out.String())
	if len(res.Benchmarks) == 0 {
		return nil, fmt.Errorf("no benchmark results in the output of %s:\n%s", res.Command, lastLines(out.String(), 30))
	}
	return res, nil
}

// parseGoBench reads go test -bench output and takes each metric's median per benchmark.
func parseGoBench(out string) []*goBench {
	type key struct{ pkg, name string }
	samples := map[key]map[string][]float64{}
	runs := map[key]int{}
	var order []key
	pkg := ""
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimSpace(p)
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		name := f[0]
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i]
			}
		}
		k := key{pkg, name}
		if samples[k] == nil {
			samples[k] = map[string][]float64{}
			order = append(order, k)
		}
		runs[k]++
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			samples[k][f[i+1]] = append(samples[k][f[i+1]], v)
		}
	}
	var res []*goBench
	for _, k := range order {
		b := &goBench{Package: k.pkg, Name: k.name, Runs: runs[k], Metrics: map[string]float64{}}
		for unit, vs := range samples[k] {
			slices.Sort(vs)
			b.Metrics[unit] = vs[len(vs)/2]
		}
		res = append(res, b)
	}
	return res
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n") + "\n"
}
