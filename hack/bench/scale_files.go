package main

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kubelogd/kubelogd/internal/testing/oracle"
)

// fileScanner counts the application lines and markers in kubelogd's file of each
// container of the scale scenario. The tailer (tailer.go) would hold 20,000 files open;
// a scan stats every file and reads only what grew since the last scan, opening and
// closing it, so the bench holds no descriptor between scans.
type fileScanner struct {
	files   []scannedFile
	buf     []byte
	longest time.Duration // the longest scan so far
}

// scannedFile is one container's file as the scans saw it.
type scannedFile struct {
	name           string // namespace/pod/container, for messages
	path           string
	off            int64 // bytes read
	part           []byte
	lines, markers int
	// at is when the scans first saw lines reach what a wait with mark asked for.
	at time.Time
}

// newFileScanner lays out the files of the pods split among the hosts (see env.each),
// in the order the hosts answer for their containers: host by host, pod by pod,
// container by container.
func newFileScanner(dir, ns string, split [][]int, perPod int) *fileScanner {
	s := &fileScanner{buf: make([]byte, 64<<10)}
	for _, pods := range split {
		for _, p := range pods {
			for c := range perPod {
				pod, ctr := podName(p), scaleContainer(c)
				s.files = append(s.files, scannedFile{name: ns + "/" + pod + "/" + ctr, path: filepath.Join(dir, ns, pod, ctr+".log")})
			}
		}
	}
	return s
}

// scan reads what every file gained and returns how many files have fewer lines than
// want(i), and how many lines they miss in all. With mark, a file's at is set when it
// first has enough.
func (s *fileScanner) scan(want func(i int) int, mark bool) (behind, missing int) {
	start := time.Now()
	for i := range s.files {
		f := &s.files[i]
		s.read(f)
		w := want(i)
		switch {
		case f.lines < w:
			behind++
			missing += w - f.lines
		case mark && f.at.IsZero():
			f.at = time.Now()
		}
	}
	s.longest = max(s.longest, time.Since(start))
	return behind, missing
}

// read reads what f gained since the last scan. A file smaller than what was read has
// been rotated (not expected at these sizes): its lines are counted again, backups included.
func (s *fileScanner) read(f *scannedFile) {
	info, err := os.Stat(f.path)
	if err != nil || info.Size() == f.off {
		return
	}
	if info.Size() < f.off {
		lines, markers, err := oracle.ReadRotated(f.path, "timestamped")
		if err == nil {
			f.lines, f.markers, f.off, f.part = len(lines), len(markers), info.Size(), nil
		}
		return
	}
	fh, err := os.Open(f.path)
	if err != nil {
		return
	}
	defer fh.Close()
	for {
		n, err := fh.ReadAt(s.buf, f.off)
		if n > 0 {
			f.off += int64(n)
			s.count(f, s.buf[:n])
		}
		if err != nil || n == 0 {
			return
		}
	}
}

// count counts the complete lines of data, an incomplete last one kept for the next read.
func (s *fileScanner) count(f *scannedFile, data []byte) {
	if len(f.part) > 0 {
		data = append(f.part, data...)
		f.part = nil
	}
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break
		}
		if isMarker(data[:i]) {
			f.markers++
		} else {
			f.lines++
		}
		data = data[i+1:]
	}
	if len(data) > 0 {
		f.part = append([]byte(nil), data...)
	}
}

// wait scans every interval until no file is behind want, alive reports that kubelogd
// exited, or timeout passes; the error then says what is missing.
func (s *fileScanner) wait(ctx context.Context, alive func() error, want func(i int) int, mark bool, timeout, every time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		behind, missing := s.scan(want, mark)
		if behind == 0 {
			return nil
		}
		if err := alive(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			var eg []string
			for i, f := range s.files {
				if f.lines < want(i) && len(eg) < 5 {
					eg = append(eg, fmt.Sprintf("%s has %d of %d lines", f.name, f.lines, want(i)))
				}
			}
			return fmt.Errorf("after %s, %d of %d containers miss %d lines in all (%s)", timeout, behind, len(s.files), missing, strings.Join(eg, "; "))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(every):
		}
	}
}

// coveredTimes is, for every file a wait with mark saw complete, how long after since.
func (s *fileScanner) coveredTimes(since time.Time) []float64 {
	var out []float64
	for _, f := range s.files {
		if !f.at.IsZero() {
			out = append(out, f.at.Sub(since).Seconds())
		}
	}
	return out
}

// scaleSampler samples, every scaleSampleEvery until stopped, the follow streams open
// on the fake kubelets and kubelogd's streams, descriptors and memory.
type scaleSampler struct {
	mu      sync.Mutex
	samples []scaleSample
	cancel  context.CancelFunc
	done    chan struct{}
}

type scaleSample struct {
	at                             time.Time
	follows                        int // open on all the kubelets
	active, polls                  float64
	rss, apiRSS, etcdRSS, hostsRSS int64
	fds                            int
	scrapeFailed                   bool // active and polls are unknown
}

func startScaleSampler(ctx context.Context, cfg *config, e *env, d *kubelogdProc) *scaleSampler {
	ctx, cancel := context.WithCancel(ctx)
	s := &scaleSampler{cancel: cancel, done: make(chan struct{})}
	apiPID, etcdPID := childPID("kube-apiserver"), childPID("etcd")
	go func() {
		defer close(s.done)
		tick := time.NewTicker(scaleSampleEvery)
		defer tick.Stop()
		for n := 0; ; n++ {
			// The first sample a period after kubelogd's exec, once it serves /metrics.
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			smp := scaleSample{at: time.Now()}
			resps, _, err := e.each(ctx, hostReq{Op: "scale-streams", Scale: &scaleReq{PerPod: 1}}, nil)
			if err == nil {
				for _, r := range resps {
					smp.follows += r.Scale.Follows
				}
			}
			if m, err := d.metrics(ctx); err == nil {
				smp.active, smp.polls = m["kubelogd_streams_active"], m["kubelogd_polls_total"]
			} else {
				smp.scrapeFailed = true
			}
			smp.rss, _ = d.rss()
			smp.fds, _ = d.fds()
			smp.apiRSS, _ = procRSS(apiPID)
			smp.etcdRSS, _ = procRSS(etcdPID)
			for _, h := range e.hosts {
				r, _ := procRSS(h.cmd.Process.Pid)
				smp.hostsRSS += r
			}
			if ctx.Err() != nil {
				return
			}
			s.mu.Lock()
			s.samples = append(s.samples, smp)
			s.mu.Unlock()
			if n%15 == 14 { // every 30 s
				cfg.progress("scale +%.0fs: %d follow streams at the kubelets, kubelogd_streams_active %.0f, polls %.0f; kubelogd RSS %.0f MiB, %d fds",
					time.Since(d.Start).Seconds(), smp.follows, smp.active, smp.polls, float64(smp.rss)/(1<<20), smp.fds)
			}
		}
	}()
	return s
}

// stop ends the sampling and waits for it; calling it again does nothing.
func (s *scaleSampler) stop() {
	s.cancel()
	<-s.done
}

func (s *scaleSampler) all() []scaleSample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.samples)
}

// childPID is the pid of this process's child running command comm (0 if none).
func childPID(comm string) int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	self := os.Getpid()
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		st := string(data)
		open, end := strings.IndexByte(st, '('), strings.LastIndexByte(st, ')')
		if open < 0 || end < open || st[open+1:end] != comm {
			continue
		}
		if f := strings.Fields(st[end+2:]); len(f) > 1 {
			if ppid, _ := strconv.Atoi(f[1]); ppid == self {
				return pid
			}
		}
	}
	return 0
}

// labelled is the series of a metric by the value of one label.
func labelled(m map[string]float64, name, label string) map[string]float64 {
	out := map[string]float64{}
	for k, v := range m {
		if rest, ok := strings.CutPrefix(k, name+"{"); ok {
			if val, ok := labelValue(rest, label); ok {
				out[val] += v
			}
		}
	}
	return out
}

// labelValue finds label="value" in the label part of a series.
func labelValue(labels, label string) (string, bool) {
	_, rest, ok := strings.Cut(labels, label+`="`)
	if !ok {
		return "", false
	}
	val, _, ok := strings.Cut(rest, `"`)
	return val, ok
}

// buckets is a histogram's cumulative counts by upper bound (+Inf included).
func buckets(m map[string]float64, name string) map[float64]float64 {
	out := map[float64]float64{}
	for le, v := range labelled(m, name+"_bucket", "le") {
		b, err := strconv.ParseFloat(le, 64) // "+Inf" parses as +Inf
		if err == nil {
			out[b] = v
		}
	}
	return out
}

// histQuantile is the q-quantile (0 < q < 1) of a histogram's cumulative counts,
// interpolated linearly within its bucket as Prometheus's histogram_quantile does; one
// in the +Inf bucket is the highest finite bound. 0 when the histogram is empty.
func histQuantile(cum map[float64]float64, q float64) float64 {
	les := make([]float64, 0, len(cum))
	for le := range cum {
		les = append(les, le)
	}
	slices.Sort(les)
	if len(les) == 0 || cum[les[len(les)-1]] <= 0 {
		return 0
	}
	rank := q * cum[les[len(les)-1]]
	prevLe, prevCum := 0.0, 0.0
	for _, le := range les {
		c := cum[le]
		if c >= rank {
			switch {
			case math.IsInf(le, 1):
				return prevLe
			case c == prevCum:
				return le
			}
			return prevLe + (le-prevLe)*(rank-prevCum)/(c-prevCum)
		}
		prevLe, prevCum = le, c
	}
	return prevLe
}
