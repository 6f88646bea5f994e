package sink

import (
	"fmt"
	"runtime"
	"sync"
	"testing"
)

// BenchmarkOpen measures what the sink costs a container until its first lines are
// written: Manager.Open, the collector's Cursor().Reset and SaveCursor for the instance,
// ten lines and the Flush the owner calls when its reader runs dry. Close is not timed.
//
//   - new-pod: a container of a pod never seen, in a directory of its own, as for every
//     pod that exists when kubelogd starts on an empty output directory (make bench's
//     coverage scenario).
//   - second-container: another container of a pod whose directory exists.
//   - reopen: a container whose files and cursor exist (kubelogd restarted), resumed
//     without a Reset.
func BenchmarkOpen(b *testing.B) {
	lines := make([]Record, 10)
	for i := range lines {
		lines[i] = rec(i, fmt.Sprintf("line %d of a container that just started", i))
	}
	write := func(b *testing.B, f *File) {
		for _, r := range lines {
			if err := f.Write(r); err != nil {
				b.Fatal(err)
			}
		}
		if err := f.Flush(); err != nil {
			b.Fatal(err)
		}
	}
	closeUntimed := func(b *testing.B, f *File) {
		b.StopTimer()
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}

	b.Run("new-pod", func(b *testing.B) {
		m := newTestManager(b, Config{})
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			f := mustOpen(b, m, Key{Namespace: "bench", Pod: fmt.Sprintf("pod-%d", i), Container: "app"})
			f.Cursor().Reset(fmt.Sprintf("uid-%d", i), "containerd://0123456789abcdef", 0)
			if err := f.SaveCursor(); err != nil {
				b.Fatal(err)
			}
			write(b, f)
			closeUntimed(b, f)
		}
	})

	b.Run("second-container", func(b *testing.B) {
		m := newTestManager(b, Config{})
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			pod := fmt.Sprintf("pod-%d", i)
			b.StopTimer()
			first := mustOpen(b, m, Key{Namespace: "bench", Pod: pod, Container: "app"})
			if err := first.Close(); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			f := mustOpen(b, m, Key{Namespace: "bench", Pod: pod, Container: "sidecar"})
			f.Cursor().Reset(fmt.Sprintf("uid-%d", i), "containerd://0123456789abcdef", 0)
			if err := f.SaveCursor(); err != nil {
				b.Fatal(err)
			}
			write(b, f)
			closeUntimed(b, f)
		}
	})

	b.Run("reopen", func(b *testing.B) {
		m := newTestManager(b, Config{})
		const pods = 100
		for i := range pods {
			f := mustOpen(b, m, Key{Namespace: "bench", Pod: fmt.Sprintf("pod-%d", i), Container: "app"})
			f.Cursor().Reset(fmt.Sprintf("uid-%d", i), "containerd://0123456789abcdef", 0)
			write(b, f)
			if err := f.Close(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			f := mustOpen(b, m, Key{Namespace: "bench", Pod: fmt.Sprintf("pod-%d", i%pods), Container: "app"})
			write(b, f)
			closeUntimed(b, f)
		}
	})
}

// BenchmarkOpenStack reports the goroutine stack a container's owner holds after opening
// its file and writing its first lines (stack-B/container), the part of an idle stream's
// memory that the sink decides: each stream's reader goroutine keeps the stack its
// deepest call grew, until GCs shrink it. A 64 KiB array in recovery once made it 128 KiB.
func BenchmarkOpenStack(b *testing.B) {
	m := newTestManager(b, Config{})
	lines := make([]Record, 10)
	for i := range lines {
		lines[i] = rec(i, fmt.Sprintf("line %d of a container that just started", i))
	}
	const owners = 200
	var perOwner float64
	for n := 0; n < b.N; n++ {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		release := make(chan struct{})
		var opened, done sync.WaitGroup
		files := make([]*File, owners)
		for i := range owners {
			opened.Add(1)
			done.Add(1)
			go func() {
				defer done.Done()
				f, err := m.Open(Key{Namespace: "stack", Pod: fmt.Sprintf("pod-%d-%d", n, i), Container: "app"})
				if err == nil {
					f.Cursor().Reset(fmt.Sprintf("uid-%d", i), "containerd://0123456789abcdef", 0)
					err = f.SaveCursor()
				}
				for _, r := range lines {
					if err == nil {
						err = f.Write(r)
					}
				}
				if err == nil {
					err = f.Flush()
				}
				if err != nil {
					b.Error(err)
				}
				files[i] = f
				opened.Done()
				<-release // idle, as a follow stream's reader is
			}()
		}
		opened.Wait()
		runtime.ReadMemStats(&after)
		close(release)
		done.Wait()
		for _, f := range files {
			if f != nil {
				_ = f.Close()
			}
		}
		perOwner = float64(after.StackInuse-before.StackInuse) / owners
	}
	b.ReportMetric(perOwner, "stack-B/container")
}
