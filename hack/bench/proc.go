package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTick is the unit of utime and stime in /proc/<pid>/stat (USER_HZ, 100 on Linux).
const clockTick = 10 * time.Millisecond

// kubelogdProc is a running kubelogd process.
type kubelogdProc struct {
	cmd     *exec.Cmd
	pid     int
	Start   time.Time // just before exec
	Dir     string    // --output-dir
	Metrics string    // base URL of /metrics
	pprof   string    // base URL of /debug/pprof with --profile
	log     string
	done    chan struct{}
}

// startKubelogd runs kubelogd against kubeconfig, writing into dir, with kubelogd's
// defaults for everything else; its output goes to dir+".out". name labels its profiles
// when --profile is set.
func startKubelogd(cfg *config, name, kubeconfig, dir string) (*kubelogdProc, error) {
	return startKubelogdWith(cfg, name, kubeconfig, dir, dir+".out")
}

// startKubelogdWith is startKubelogd with kubelogd's output in logPath and extra flags:
// replicas share one dir, so each needs an output file of its own. The kubelogd-pprof
// subcommand of --profile parses only the follow budget's flags.
func startKubelogdWith(cfg *config, name, kubeconfig, dir, logPath string, extra ...string) (*kubelogdProc, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	out, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	bin, args, pprofURL, err := kubelogdCommand(cfg, name)
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	args = append(args, "--kubeconfig", kubeconfig, "--output-dir", dir, "--metrics-addr", addr)
	args = append(args, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	d := &kubelogdProc{cmd: cmd, Dir: dir, Metrics: "http://" + addr, pprof: pprofURL, log: logPath, done: make(chan struct{})}
	d.Start = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	d.pid = cmd.Process.Pid
	go func() { _ = cmd.Wait(); close(d.done) }()
	return d, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// alive returns an error with kubelogd's last output if it has exited.
func (d *kubelogdProc) alive() error {
	select {
	case <-d.done:
		return fmt.Errorf("kubelogd exited (%v):\n%s", d.cmd.ProcessState, tailFile(d.log, 30))
	default:
		return nil
	}
}

// stop sends SIGTERM and waits for the exit, killing the process after 30s; it reports
// whether the process exited by itself (or had already).
func (d *kubelogdProc) stop() bool {
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
		return true
	case <-time.After(30 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
		return false
	}
}

// kill sends SIGKILL and waits for the exit: a replica dying without handing anything
// over, as when its node is lost.
func (d *kubelogdProc) kill() {
	_ = d.cmd.Process.Kill()
	<-d.done
}

// cpu is the process's user+system CPU time so far.
func (d *kubelogdProc) cpu() (time.Duration, error) { return procCPU(d.pid) }

func procCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields after it start past its ')'.
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	// f[0] is field 3 (state): utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parsing /proc/%d/stat", pid)
	}
	return time.Duration(u+st) * clockTick, nil
}

// rss is VmRSS from /proc/<pid>/status, in bytes.
func (d *kubelogdProc) rss() (int64, error) { return procRSS(d.pid) }

func procRSS(pid int) (int64, error) {
	kb, err := procStatus(pid, "VmRSS")
	return kb << 10, err
}

// procStatus is the number in a line of /proc/<pid>/status ("VmRSS", in kB, or "Threads").
func procStatus(pid int, key string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key+":"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", key, pid)
}

// fds counts the open file descriptors.
func (d *kubelogdProc) fds() (int, error) { return procFDs(d.pid) }

func procFDs(pid int) (int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(ents), err
}

// metrics scrapes /metrics: each family's name holds the sum of its series (labels
// ignored), and each labelled series is also kept under its own text, such as
// `kubelogd_targets{state="polling"}`.
func (d *kubelogdProc) metrics(ctx context.Context) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, d.Metrics+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	return parseMetrics(resp.Body)
}

func parseMetrics(r io.Reader) (map[string]float64, error) {
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		series, name := line[:sp], line[:sp]
		if i := strings.IndexByte(name, '{'); i >= 0 {
			name = name[:i]
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			continue
		}
		out[name] += v
		if series != name {
			out[series] = v
		}
	}
	return out, sc.Err()
}

// dirBytes sums the sizes of the files under dir whose names start with prefix and end
// in .log (a container's current file and its rotated backups).
func dirBytes(dir, prefix string) int64 {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	var n int64
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) && filepath.Ext(e.Name()) == ".log" {
			if info, err := e.Info(); err == nil {
				n += info.Size()
			}
		}
	}
	return n
}

// logTime returns how long after the exec kubelogd logged msg first (its text logs carry
// millisecond times), or false if it did not.
func (d *kubelogdProc) logTime(msg string) (time.Duration, bool) {
	data, err := os.ReadFile(d.log)
	if err != nil {
		return 0, false
	}
	want := "msg=" + strconv.Quote(msg)
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.Contains(line, want) {
			continue
		}
		ts, ok := strings.CutPrefix(strings.Fields(line)[0], "time=")
		if !ok {
			return 0, false
		}
		t, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			return 0, false
		}
		return t.Sub(d.Start), true
	}
	return 0, false
}

// cpuByCommand sums the CPU time of this process (as "bench") and of its children, by
// their command name: kube-apiserver, etcd, kubelogd, and the bench's own children
// (kubelet hosts and copiers, named after the bench binary).
func cpuByCommand() map[string]time.Duration {
	out := map[string]time.Duration{}
	self := os.Getpid()
	if t, err := procCPU(self); err == nil {
		out["bench"] = t
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		s := string(data)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open {
			continue
		}
		f := strings.Fields(s[end+2:])
		if len(f) < 13 {
			continue
		}
		if ppid, _ := strconv.Atoi(f[1]); ppid != self {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		out[s[open+1:end]] += time.Duration(u+st) * clockTick
	}
	return out
}

// machineCPU returns the busy and total time of all CPUs from /proc/stat.
func machineCPU() (busy, total time.Duration) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		d := time.Duration(n) * clockTick
		if i >= 8 { // guest time is counted in user already
			break
		}
		total += d
		if i != 3 && i != 4 { // idle, iowait
			busy += d
		}
	}
	return busy, total
}
