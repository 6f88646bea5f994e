package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// stern (github.com/stern/stern, pinned in hack/tools/stern) is the peer column: the tool
// people run to follow many pods' logs, reading them through the API server as kubelogd
// does. It runs in the same bench run, on the same control plane and pods, right after the
// transport alone and before kubelogd, so that the two never compete for the machine.

// sternCoverage is stern following the pods that existed before it started.
type sternCoverage struct {
	// Seconds runs from stern's exec until the bench has read, from its stdout, every
	// line of every pod: kubelogd's figure counts lines readable in its files instead.
	Seconds float64 `json:"seconds"`
	// CPUSeconds is stern's user+system time until then.
	CPUSeconds     float64 `json:"cpu_seconds"`
	MaxLogRequests int     `json:"max_log_requests"`
	// Lines counts the application lines printed, each checked byte for byte against what
	// the fake kubelet was given; Duplicates those printed again, Other the lines that are
	// no pod's (stern prints a line it cannot parse with the error in front).
	Lines      int `json:"lines"`
	Duplicates int `json:"duplicates"`
	Other      int `json:"other_lines"`
	// Retries counts "failed to tail" on stern's stderr, the first being FirstError.
	Retries    int    `json:"retries"`
	FirstError string `json:"first_error,omitempty"`
}

// sternMemory is what /proc tells of stern while it follows Streams idle containers
// (stern serves no metrics).
type sternMemory struct {
	Streams         int     `json:"streams"`
	RSSBytes        int64   `json:"rss_bytes"`
	RSSKiBPerStream float64 `json:"rss_kib_per_stream"`
	Threads         int64   `json:"threads"`
	FDs             int     `json:"fds"`
	FDsPerStream    float64 `json:"fds_per_stream"`
}

// sternArgs are the flags of every stern run: no client-side throttling (kubelogd's
// default is QPS 500, burst 500; stern's would be client-go's 5 and 10), none of the
// user's ~/.config/stern (an empty file instead), no colour, and nothing but log lines on
// stdout: "+ pod › container" goes to stderr, which only errors then reach.
func sternArgs(kubeconfig string) []string {
	return []string{"--kubeconfig", kubeconfig, "--qps", "-1", "--config", os.DevNull,
		"--color", "never", "--only-log-lines"}
}

// runSternCoverage runs stern on the n pods of ns, each with lines lines of size bytes,
// until it has printed every line; then, if idle is not nil, it waits until the kubelets
// serve stern's n follow streams and calls idle with stern running and its streams idle
// (the memory scenario measures it then); then it stops stern and waits until the
// kubelets have closed its streams.
func runSternCoverage(ctx context.Context, cfg *config, e *env, ns string, n, lines, size int, idle func(*sternProc) error) (*sternCoverage, error) {
	res := &sternCoverage{MaxLogRequests: n + 100} // one container per pod, and room
	tr := newCoverTracker(lines, map[string]int{ns: n})
	check := &sternLines{lines: lines, size: size, tr: tr, seen: map[string]uint64{}}
	args := append(sternArgs(e.c.Kubeconfig), ".", "--namespace", ns,
		"--max-log-requests", strconv.Itoa(res.MaxLogRequests), "--output", "raw")
	errLog := filepath.Join(cfg.workDir, fmt.Sprintf("stern-%s-%d.err", ns, n))
	p, err := startStern(cfg.stern, errLog, check.onLine, args...)
	if err != nil {
		return nil, err
	}
	defer p.stop()
	if err := tr.wait(ctx, p.alive, ns, 5*time.Minute); err != nil {
		p.stop() // the counts are final once the reader has ended
		return nil, fmt.Errorf("%w; stern printed %d distinct lines, %d duplicates, %d other lines; its stderr:\n%s",
			err, check.distinct, check.dups, check.other, tailFile(errLog, 10))
	}
	if cpu, err := procCPU(p.pid); err == nil {
		res.CPUSeconds = cpu.Seconds()
	}
	res.Seconds = tr.last(ns).Sub(p.start).Seconds()
	cfg.progress("stern printed every line of the %d pods of %s %.2fs after its start", n, ns, res.Seconds)

	if idle != nil {
		// Every line printed means every stream was open; the kubelets confirm that they
		// all still are, following, before idle reads the memory.
		pods := make([]int, n)
		for i := range pods {
			pods[i] = i
		}
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		err = e.waitFollowers(wctx, ns, pods)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("stern's follow streams: %w", err)
		}
		if err := idle(p); err != nil {
			return nil, err
		}
	}
	p.stop()
	// The reader has ended with the process: the counts are final. Duplicates and other
	// lines are the peer's to explain; the report shows them, as it does kubelogd's.
	res.Lines, res.Duplicates, res.Other = check.distinct, check.dups, check.other
	res.Retries, res.FirstError = countRetries(errLog)
	// So that kubelogd, next, is not charged with the API server's ending stern's streams.
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := e.waitClosed(wctx, ns); err != nil {
		return nil, fmt.Errorf("after stern's exit: %w", err)
	}
	return res, nil
}

// sampleSternMemory lets stern settle as the memory scenario does kubelogd, then
// reads its RSS, threads and descriptors three times half a second apart, keeping the
// median.
func sampleSternMemory(ctx context.Context, p *sternProc, streams int, settle time.Duration) (sternMemory, error) {
	if err := sleepCtx(ctx, settle); err != nil {
		return sternMemory{}, err
	}
	var rss, threads []int64
	var fds []int
	for i := range 3 {
		if i > 0 {
			time.Sleep(500 * time.Millisecond)
		}
		if err := p.alive(); err != nil {
			return sternMemory{}, err
		}
		r, err := procRSS(p.pid)
		if err != nil {
			return sternMemory{}, err
		}
		t, err := procStatus(p.pid, "Threads")
		if err != nil {
			return sternMemory{}, err
		}
		f, err := procFDs(p.pid)
		if err != nil {
			return sternMemory{}, err
		}
		rss, threads, fds = append(rss, r), append(threads, t), append(fds, f)
	}
	m := sternMemory{Streams: streams, RSSBytes: median(rss), Threads: median(threads), FDs: median(fds)}
	m.RSSKiBPerStream = float64(m.RSSBytes) / 1024 / float64(streams)
	m.FDsPerStream = float64(m.FDs) / float64(streams)
	return m, nil
}

// median of samples (sorted in place).
func median[T cmp.Ordered](xs []T) T {
	slices.Sort(xs)
	return xs[len(xs)/2]
}

// countRetries counts stern's "failed to tail: …, will retry" (and the final "failed to
// tail" of a stream it gave up on) in its stderr.
func countRetries(errLog string) (n int, first string) {
	data, err := os.ReadFile(errLog)
	if err != nil {
		return 0, ""
	}
	for _, l := range strings.Split(string(data), "\n") {
		if strings.Contains(l, "failed to tail") {
			if n == 0 {
				first = l
			}
			n++
		}
	}
	return n, first
}

// sternLines checks each line stern prints with --output raw against the line the
// kubelet host gave the pod (fill("coverage <ns>/<pod> line <i>", size), see host.go)
// and hands the first of each to the tracker. It runs on the reader's goroutine only.
type sternLines struct {
	lines, size int
	tr          *coverTracker
	seen        map[string]uint64 // "<ns>/<pod>" → bit i set once line i was printed

	distinct, dups, other int
}

func (s *sternLines) onLine(line []byte, at time.Time) {
	rest, ok := bytes.CutPrefix(line, []byte("coverage "))
	key, rest, ok2 := bytes.Cut(rest, []byte(" line "))
	ns, pod, ok3 := bytes.Cut(key, []byte("/"))
	digits := 0
	for digits < len(rest) && rest[digits] >= '0' && rest[digits] <= '9' {
		digits++
	}
	i, err := strconv.Atoi(string(rest[:digits]))
	if !ok || !ok2 || !ok3 || err != nil || i >= s.lines || i >= 64 ||
		string(line) != fill(fmt.Sprintf("coverage %s line %d", key, i), s.size) {
		s.other++
		return
	}
	bit := uint64(1) << i
	if s.seen[string(key)]&bit != 0 {
		s.dups++
		return
	}
	s.seen[string(key)] |= bit
	s.distinct++
	s.tr.onLine(filepath.Join(string(ns), string(pod), container+".log"), line, at)
}

// sternProc is a running stern whose stdout the bench reads line by line through a pipe.
// stern writes each line with one write(2), and a pipe keeps writes up to PIPE_BUF (4 KiB)
// whole, so lines of the many streams never interleave.
type sternProc struct {
	cmd    *exec.Cmd
	pid    int
	start  time.Time // just before exec
	errLog string
	done   chan struct{} // the process has exited
	read   chan struct{} // its stdout is read to the end
}

// startStern runs bin with args, its stderr in errLog; onLine gets each line of its
// stdout without the newline, on one goroutine, the slice valid during the call only.
func startStern(bin, errLog string, onLine func(line []byte, at time.Time), args ...string) (*sternProc, error) {
	errFile, err := os.Create(errLog)
	if err != nil {
		return nil, err
	}
	defer errFile.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = w, errFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p := &sternProc{cmd: cmd, errLog: errLog, done: make(chan struct{}), read: make(chan struct{})}
	p.start = time.Now()
	err = cmd.Start()
	// The child has its own copy of the write end: the read end sees EOF when it exits.
	_ = w.Close()
	if err != nil {
		_ = r.Close()
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	p.pid = cmd.Process.Pid
	go func() { _ = cmd.Wait(); close(p.done) }()
	go func() {
		defer close(p.read)
		defer r.Close()
		readLines(r, onLine)
	}()
	return p, nil
}

// readLines calls onLine for each line of r until EOF. A line longer than the buffer is
// handed over in pieces (none is expected).
func readLines(r io.Reader, onLine func(line []byte, at time.Time)) {
	br := bufio.NewReaderSize(r, 1<<20)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			onLine(bytes.TrimSuffix(line, []byte("\n")), time.Now())
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

// alive returns an error with stern's last stderr if it has exited.
func (p *sternProc) alive() error {
	select {
	case <-p.done:
		return fmt.Errorf("stern exited (%v):\n%s", p.cmd.ProcessState, tailFile(p.errLog, 30))
	default:
		return nil
	}
}

// stop sends SIGTERM (stern exits on it at once), kills it after 10s, and returns once
// its stdout is read to the end. It may be called again.
func (p *sternProc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	<-p.read
}
