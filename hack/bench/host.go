package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubelogd/kubelogd/internal/testing/fakekubelet"
)

// A kubelet host is a child process of the bench running one fake kubelet. The fake
// kubelet holds three descriptors per followed container (its CRI file, the reader's file
// and the reader's inotify instance), and this machine's hard RLIMIT_NOFILE (20,000 without
// CAP_SYS_RESOURCE) caps one process at about 6,000 followed containers; the coverage
// scenario follows 10,000. The parent drives the hosts with one JSON request per line on
// their stdin and reads one JSON response per line from their stdout.

// hostReq is one request to a kubelet host.
type hostReq struct {
	ID int    `json:"id"`
	Op string `json:"op"` // create, followers, closed, emit, single, maxfollows; quiet, reads (polled.go)
	NS string `json:"ns"`
	// Pods are the pod indices (names podName(i)) a create or emit works on.
	Pods []int `json:"pods,omitempty"`
	// Lines and Size: lines per pod a create appends, or lines a single writes, and the
	// bytes of each line's text.
	Lines int `json:"lines,omitempty"`
	Size  int `json:"size,omitempty"`
	// N is the number of follow streams to wait for.
	N int `json:"n,omitempty"`
	// Interval and Duration pace an emit: each pod emits a line every Interval for Duration
	// (a quiet: at random moments, Interval apart on average).
	Interval time.Duration `json:"interval,omitempty"`
	Duration time.Duration `json:"duration,omitempty"`
	// Workers is how many pods a create works on at once.
	Workers int `json:"workers,omitempty"`
	// Scale holds the parameters of the scale scenario's operations (scale_host.go).
	Scale *scaleReq `json:"scale,omitempty"`
}

// hostResp answers the request with the same ID.
type hostResp struct {
	ID  int    `json:"id"`
	Err string `json:"err,omitempty"`
	// Ready holds, per pod of a create, when it was running with its lines in the CRI file
	// (Unix nanoseconds).
	Ready []int64 `json:"ready,omitempty"`
	// Counts holds, per pod of an emit, how many lines it emitted.
	Counts []int `json:"counts,omitempty"`
	// Lag is how late an emit's lines were against their schedule, at most.
	Lag time.Duration `json:"lag,omitempty"`
	// Scale answers the scale scenario's operations.
	Scale *scaleResp `json:"scale,omitempty"`
	// Times holds, per pod of a quiet, when each line was appended (Unix nanoseconds).
	Times [][]int64 `json:"times,omitempty"`
	// Reads holds, per pod of a reads, the log requests the kubelet answered 200.
	Reads [][]hostRead `json:"reads,omitempty"`
	// Max is the answer of a maxfollows.
	Max int `json:"max,omitempty"`
}

// runHost is the kubelet-host subcommand.
func runHost(args []string) error {
	if len(args) != 5 {
		return errors.New("usage: kubelet-host <kubeconfig> <cert> <key> <node> <dir>")
	}
	kubeconfig, certFile, keyFile, node, dir := args[0], args[1], args[2], args[3], args[4]
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	cfg.QPS = -1 // the admin client of the tests: never throttled
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return err
	}
	k, err := fakekubelet.New(fakekubelet.Config{Client: client, NodeName: node, ServingCert: cert, Dir: dir})
	if err != nil {
		return err
	}
	defer k.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := k.Register(ctx); err != nil {
		return err
	}
	h := &host{k: k, client: client, out: json.NewEncoder(os.Stdout)}
	h.reply(hostResp{ID: 0}) // registered
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(nil, 64<<20)
	var wg sync.WaitGroup
	for in.Scan() {
		var req hostReq
		if err := json.Unmarshal(in.Bytes(), &req); err != nil {
			return err
		}
		wg.Go(func() { h.reply(h.handle(ctx, req)) })
	}
	// stdin closed: the parent is done (or gone).
	cancel()
	wg.Wait()
	return nil
}

type host struct {
	k      *fakekubelet.Kubelet
	client kubernetes.Interface
	mu     sync.Mutex
	out    *json.Encoder
}

func (h *host) reply(r hostResp) {
	h.mu.Lock()
	defer h.mu.Unlock()
	_ = h.out.Encode(r)
}

func (h *host) handle(ctx context.Context, req hostReq) hostResp {
	if resp, ok := h.scaleHandle(ctx, req); ok {
		return resp
	}
	resp := hostResp{ID: req.ID}
	var err error
	switch req.Op {
	case "create":
		resp.Ready, err = h.create(ctx, req)
	case "followers":
		wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		err = h.k.WaitForFollowers(wctx, req.NS, "", "", req.N)
		cancel()
	case "closed":
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		err = h.waitClosed(wctx, req.NS)
		cancel()
	case "emit":
		resp.Counts, resp.Lag, err = h.emit(ctx, req)
	case "single":
		err = h.single(ctx, req)
	case "quiet":
		resp.Times, err = h.quiet(ctx, req)
	case "reads":
		resp.Reads = h.reads(req)
	case "maxfollows":
		resp.Max = h.k.MaxFollowStreams()
	default:
		err = fmt.Errorf("unknown op %q", req.Op)
	}
	if err != nil {
		resp.Err = err.Error()
	}
	return resp
}

// waitClosed waits until the kubelet serves no log stream of ns: the reader that had them
// open has gone, and the API server has ended every stream it proxied for it.
func (h *host) waitClosed(ctx context.Context, ns string) error {
	for {
		n := h.k.OpenStreams(ns, "", "")
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d log streams of %s still open: %w", n, ns, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// fill pads s with a repeating pattern to n bytes.
func fill(s string, n int) string {
	const pad = " abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	for len(s) < n {
		s += pad[:min(len(pad), n-len(s))]
	}
	return s[:max(n, 0)]
}

// create makes running pods with req.Lines lines each (restartPolicy Always, one
// container), req.Workers at a time.
func (h *host) create(ctx context.Context, req hostReq) ([]int64, error) {
	ready := make([]int64, len(req.Pods))
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for range max(req.Workers, 1) {
		wg.Go(func() {
			for ctx.Err() == nil {
				j := int(next.Add(1) - 1)
				if j >= len(req.Pods) {
					return
				}
				name := podName(req.Pods[j])
				if err := h.createOne(ctx, req, name); err != nil {
					once.Do(func() { firstErr = fmt.Errorf("pod %s/%s: %w", req.NS, name, err); cancel() })
					return
				}
				ready[j] = time.Now().UnixNano()
			}
		})
	}
	wg.Wait()
	return ready, firstErr
}

func (h *host) createOne(ctx context.Context, req hostReq, name string) error {
	p := podSpec(req.NS, name, h.k.NodeName(), corev1.RestartPolicyAlways)
	if _, err := h.client.CoreV1().Pods(req.NS).Create(ctx, p, metav1.CreateOptions{}); err != nil {
		return err
	}
	if err := h.k.StartContainer(ctx, req.NS, name, container); err != nil {
		return err
	}
	if req.Lines == 0 {
		return nil
	}
	lines := make([]fakekubelet.Line, req.Lines)
	for i := range lines {
		lines[i].Text = fill(fmt.Sprintf("coverage %s/%s line %d", req.NS, name, i), req.Size)
	}
	return h.k.Append(req.NS, name, container, lines...)
}

// emit appends one line every req.Interval to each pod for req.Duration, the pods' turns
// spread evenly over the interval. Each line's text starts with "lat <unix nanoseconds>",
// the time it was appended to the CRI file.
func (h *host) emit(ctx context.Context, req hostReq) ([]int, time.Duration, error) {
	counts := make([]int, len(req.Pods))
	n := len(req.Pods)
	if n == 0 {
		return counts, 0, nil
	}
	step := req.Interval / time.Duration(n)
	start := time.Now()
	rounds := int(req.Duration / req.Interval)
	var lag time.Duration
	for r := range rounds {
		for j := 0; j < n; {
			due := start.Add(time.Duration(r)*req.Interval + time.Duration(j)*step)
			if d := time.Until(due); d > 0 {
				select {
				case <-ctx.Done():
					return counts, lag, ctx.Err()
				case <-time.After(d):
				}
			}
			// Every pod whose turn has come goes now.
			now := time.Now()
			for ; j < n; j++ {
				due := start.Add(time.Duration(r)*req.Interval + time.Duration(j)*step)
				if due.After(now) {
					break
				}
				lag = max(lag, now.Sub(due))
				t := time.Now()
				name := podName(req.Pods[j])
				text := fill(fmt.Sprintf("lat %d %s %d", t.UnixNano(), name, counts[j]), req.Size)
				if err := h.k.Append(req.NS, name, container, fakekubelet.Line{Time: t.UTC(), Text: text}); err != nil {
					return counts, lag, err
				}
				counts[j]++
			}
		}
	}
	return counts, lag, nil
}

// single creates one pod (restartPolicy Never) whose container writes req.Lines lines of
// req.Size bytes and exits 0, so every reader makes the same non-follow read of a finished
// container.
func (h *host) single(ctx context.Context, req hostReq) error {
	const name = "single"
	p := podSpec(req.NS, name, h.k.NodeName(), corev1.RestartPolicyNever)
	if _, err := h.client.CoreV1().Pods(req.NS).Create(ctx, p, metav1.CreateOptions{}); err != nil {
		return err
	}
	if err := h.k.StartContainer(ctx, req.NS, name, container); err != nil {
		return err
	}
	// AppendRaw: Append would also keep every line in memory for assertions.
	const chunk = 10_000
	buf := make([]byte, 0, chunk*(req.Size+64))
	pad := fill("single line 0000000", req.Size)
	t := time.Now().UTC()
	for i := 0; i < req.Lines; {
		buf = buf[:0]
		for end := min(i+chunk, req.Lines); i < end; i++ {
			t = t.Add(time.Microsecond)
			buf = t.AppendFormat(buf, time.RFC3339Nano)
			buf = append(buf, " stdout F "...)
			// "single line <i, 7 digits>" and the padding: no formatting per line.
			text := len(buf)
			buf = append(buf, pad...)
			for j, n := text+len("single line 0000000")-1, i; n > 0; j, n = j-1, n/10 {
				buf[j] = byte('0' + n%10)
			}
			buf = append(buf, '\n')
		}
		if err := h.k.AppendRaw(req.NS, name, container, buf); err != nil {
			return err
		}
	}
	return h.k.Terminate(ctx, req.NS, name, container, 0, "Completed")
}

// hostProc is the parent's handle on a kubelet host.
type hostProc struct {
	node string
	cmd  *exec.Cmd
	in   io.WriteCloser
	mu   sync.Mutex // guards in and waiting
	next int
	wait map[int]chan hostResp
	done chan struct{}
	err  error // why the host ended, once done is closed
	log  string
}

// startHost starts a kubelet host for node and waits until its Node is registered.
func startHost(ctx context.Context, self, kubeconfig, node, dir string, certPEM, keyPEM []byte) (*hostProc, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	certFile, keyFile := filepath.Join(dir, "kubelet.crt"), filepath.Join(dir, "kubelet.key")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "host.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	cmd := exec.Command(self, "kubelet-host", kubeconfig, certFile, keyFile, node, filepath.Join(dir, "logs"))
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	h := &hostProc{node: node, cmd: cmd, in: in, next: 1, wait: map[int]chan hostResp{0: make(chan hostResp, 1)}, done: make(chan struct{}), log: logPath}
	go h.read(out)
	select {
	case r := <-h.wait[0]:
		if r.Err != "" {
			return nil, errors.New(r.Err)
		}
	case <-h.done:
		return nil, fmt.Errorf("kubelet host %s: %v\n%s", node, h.err, tailFile(logPath, 20))
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		return nil, ctx.Err()
	}
	return h, nil
}

func (h *hostProc) read(out io.Reader) {
	sc := bufio.NewScanner(out)
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		var r hostResp
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			continue
		}
		h.mu.Lock()
		ch := h.wait[r.ID]
		delete(h.wait, r.ID)
		h.mu.Unlock()
		if ch != nil {
			ch <- r
		}
	}
	h.err = h.cmd.Wait()
	close(h.done)
}

// call sends req and waits for its answer.
func (h *hostProc) call(ctx context.Context, req hostReq) (hostResp, error) {
	ch := make(chan hostResp, 1)
	h.mu.Lock()
	req.ID = h.next
	h.next++
	h.wait[req.ID] = ch
	data, _ := json.Marshal(req)
	_, err := h.in.Write(append(data, '\n'))
	h.mu.Unlock()
	if err != nil {
		return hostResp{}, fmt.Errorf("kubelet host %s: %w", h.node, err)
	}
	select {
	case r := <-ch:
		if r.Err != "" {
			return r, fmt.Errorf("kubelet host %s: %s: %s", h.node, req.Op, r.Err)
		}
		return r, nil
	case <-h.done:
		return hostResp{}, fmt.Errorf("kubelet host %s exited: %v\n%s", h.node, h.err, tailFile(h.log, 20))
	case <-ctx.Done():
		return hostResp{}, ctx.Err()
	}
}

// stop closes the host's stdin, which makes it close its kubelet and exit.
func (h *hostProc) stop() {
	h.mu.Lock()
	_ = h.in.Close()
	h.mu.Unlock()
	select {
	case <-h.done:
	case <-time.After(10 * time.Second):
		_ = h.cmd.Process.Kill()
		<-h.done
	}
}

// tailFile returns the last n lines of a file, for error messages.
func tailFile(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
