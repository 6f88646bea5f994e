package fakekubelet

import (
	"fmt"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// Line is one application line for Append.
type Line struct {
	// Time is the runtime's timestamp of the line; zero means now (in UTC). It is written
	// in its own location, so a test can mimic a runtime in another time zone, and need not
	// increase: equal timestamps and out-of-order stdout/stderr are expressible.
	Time time.Time
	// Stream is "stdout" (the default when empty) or "stderr".
	Stream string
	// Text is the line without its newline; it must not contain one.
	Text string
}

// Instance describes one run of a container, for assertions.
type Instance struct {
	// ContainerID is the ID as pod status reports it ("containerd://<hex>").
	ContainerID string
	// RestartCount is the container's restartCount while this instance ran.
	RestartCount int32
	// LogPath is the CRI log file of the instance (after rotation, its current file).
	LogPath string
	// Running is true until the instance terminated.
	Running bool
	// ExitCode and Reason are set once the instance terminated.
	ExitCode int32
	Reason   string
	// Lines are the application lines the instance emitted, in file order.
	Lines []Line
}

// Append writes lines to the CRI log file of the running instance of a container, each as
// one record "<timestamp> <stream> F <text>\n" with the timestamp in time.RFC3339Nano, as
// containerd writes them. All lines go out in one write, so a follower sees them together.
func (k *Kubelet) Append(namespace, pod, container string, lines ...Line) error {
	var b strings.Builder
	for i := range lines {
		l := &lines[i]
		if err := normalize(l); err != nil {
			return err
		}
		writeRecord(&b, l, "F", l.Text)
	}
	return k.write(namespace, pod, container, []byte(b.String()), lines)
}

// AppendPartial writes one long line as the runtime splits it: records tagged P of partSize
// bytes of text each, then a final F record with the rest. All records carry the line's
// timestamp; the kubelet joins them into one line and prefixes only the first.
func (k *Kubelet) AppendPartial(namespace, pod, container string, line Line, partSize int) error {
	if partSize < 1 {
		return fmt.Errorf("part size %d: must be at least 1", partSize)
	}
	if err := normalize(&line); err != nil {
		return err
	}
	var b strings.Builder
	text := line.Text
	for len(text) > partSize {
		writeRecord(&b, &line, "P", text[:partSize])
		text = text[partSize:]
	}
	writeRecord(&b, &line, "F", text)
	return k.write(namespace, pod, container, []byte(b.String()), []Line{line})
}

// AppendRaw writes bytes as they are to the CRI log file of the running instance, such as an
// incomplete record without its newline. They are not recorded as emitted lines.
func (k *Kubelet) AppendRaw(namespace, pod, container string, data []byte) error {
	return k.write(namespace, pod, container, data, nil)
}

func normalize(l *Line) error {
	if l.Time.IsZero() {
		l.Time = time.Now().UTC()
	}
	switch l.Stream {
	case "":
		l.Stream = "stdout"
	case "stdout", "stderr":
	default:
		return fmt.Errorf("stream %q: must be stdout or stderr", l.Stream)
	}
	if strings.Contains(l.Text, "\n") {
		return fmt.Errorf("line %q contains a newline: append each line separately", l.Text)
	}
	return nil
}

func writeRecord(b *strings.Builder, l *Line, tag, text string) {
	b.WriteString(l.Time.Format(time.RFC3339Nano))
	b.WriteByte(' ')
	b.WriteString(l.Stream)
	b.WriteByte(' ')
	b.WriteString(tag)
	b.WriteByte(' ')
	b.WriteString(text)
	b.WriteByte('\n')
}

// write appends data to the running instance's file and records lines as emitted.
func (k *Kubelet) write(namespace, pod, container string, data []byte, lines []Line) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	_, c, err := k.lookupContainer(namespace, pod, container)
	if err != nil {
		return err
	}
	in := c.current()
	if !in.running || in.f == nil {
		return fmt.Errorf("container %q of pod %s/%s is not running: nothing writes its log", container, namespace, pod)
	}
	if _, err := in.f.Write(data); err != nil {
		return fmt.Errorf("writing log of container %q of pod %s/%s: %w", container, namespace, pod, err)
	}
	in.lines = append(in.lines, lines...)
	return nil
}

// RotateLog rotates the running instance's log file as the kubelet's log manager does:
// <n>.log is renamed to <n>.log.<YYYYMMDD-hhmmss> and a new empty <n>.log is created for the
// runtime to write to. Follow streams reopen the new file; lines only in the rotated file
// are never served again. It returns the rotated file's path.
func (k *Kubelet) RotateLog(namespace, pod, container string) (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	_, c, err := k.lookupContainer(namespace, pod, container)
	if err != nil {
		return "", err
	}
	in := c.current()
	if !in.running {
		return "", fmt.Errorf("container %q of pod %s/%s is not running: the kubelet rotates only running containers' logs", container, namespace, pod)
	}
	rotated := in.path + "." + time.Now().Format("20060102-150405")
	for i := 1; ; i++ {
		if _, err := os.Lstat(rotated); os.IsNotExist(err) {
			break
		}
		rotated = fmt.Sprintf("%s.%s.%d", in.path, time.Now().Format("20060102-150405"), i)
	}
	if err := os.Rename(in.path, rotated); err != nil {
		return "", fmt.Errorf("rotating log of container %q: %w", container, err)
	}
	// The runtime's ReopenContainerLog: close the renamed file, write to a new one.
	in.closeFile()
	f, err := os.OpenFile(in.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_TRUNC, 0o640)
	if err != nil {
		return "", fmt.Errorf("reopening log of container %q: %w", container, err)
	}
	in.f = f
	return rotated, nil
}

// Emitted returns the texts of the lines a container emitted, over all its instances in
// order, repeats included, for the newest pod with that name (Append and AppendPartial
// record them; AppendRaw does not). It is nil for a container that never started.
func (k *Kubelet) Emitted(namespace, pod, container string) []string {
	return texts(k.Instances(namespace, pod, container))
}

// EmittedByUID is Emitted for one pod UID, for pods replaced by a pod of the same name.
func (k *Kubelet) EmittedByUID(uid types.UID, container string) []string {
	return texts(k.InstancesByUID(uid, container))
}

func texts(instances []Instance) []string {
	var out []string
	for _, in := range instances {
		for _, l := range in.Lines {
			out = append(out, l.Text)
		}
	}
	return out
}

// Instances describes every instance a container ran, oldest first, for the newest pod with
// that name. It is nil for a container that never started.
func (k *Kubelet) Instances(namespace, pod, container string) []Instance {
	k.mu.Lock()
	defer k.mu.Unlock()
	_, c, err := k.lookupContainer(namespace, pod, container)
	if err != nil {
		return nil
	}
	return describe(c)
}

// InstancesByUID is Instances for one pod UID.
func (k *Kubelet) InstancesByUID(uid types.UID, container string) []Instance {
	k.mu.Lock()
	defer k.mu.Unlock()
	ps := k.state[uid]
	if ps == nil || ps.containers[container] == nil {
		return nil
	}
	return describe(ps.containers[container])
}

// describe copies a container's instances for callers. Called with k.mu held.
func describe(c *containerState) []Instance {
	out := make([]Instance, 0, len(c.instances))
	for _, in := range c.instances {
		out = append(out, Instance{
			ContainerID:  containerIDPrefix + in.id,
			RestartCount: in.restartCount,
			LogPath:      in.path,
			Running:      in.running,
			ExitCode:     in.exitCode,
			Reason:       in.reason,
			Lines:        append([]Line(nil), in.lines...),
		})
	}
	return out
}
