package plugin

import (
	"context"
	"os"
	"os/signal"

	"golang.org/x/term"
	"k8s.io/client-go/tools/remotecommand"
)

// sizeQueue reports the local terminal's size to the remote terminal: once at the start,
// then at every change where the system signals one (resizeSignals).
type sizeQueue struct {
	ch chan remotecommand.TerminalSize
}

var _ remotecommand.TerminalSizeQueue = (*sizeQueue)(nil)

// newSizeQueue watches the size of the terminal f until ctx is done.
func newSizeQueue(ctx context.Context, f *os.File) *sizeQueue {
	q := &sizeQueue{ch: make(chan remotecommand.TerminalSize, 1)}
	sig := make(chan os.Signal, 1)
	if len(resizeSignals) > 0 {
		signal.Notify(sig, resizeSignals...)
	}
	go func() {
		defer close(q.ch)
		defer signal.Stop(sig)
		for {
			if w, h, err := term.GetSize(int(f.Fd())); err == nil {
				select {
				case q.ch <- remotecommand.TerminalSize{Width: uint16(w), Height: uint16(h)}:
				case <-ctx.Done():
					return
				}
			}
			select {
			case <-sig:
			case <-ctx.Done():
				return
			}
		}
	}()
	return q
}

// Next returns the next size, or nil once the session is over.
func (q *sizeQueue) Next() *remotecommand.TerminalSize {
	s, ok := <-q.ch
	if !ok {
		return nil
	}
	return &s
}
