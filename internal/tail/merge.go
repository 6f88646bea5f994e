package tail

import (
	"context"
	"fmt"
)

// cursor is a stream's position in the merge: its current batch and line.
type cursor struct {
	s *stream
	b *batch
	i int
}

// next moves c to the stream's next batch, handing the exhausted one back. It returns
// false when the stream has ended.
func (c *cursor) next(ctx context.Context) (bool, error) {
	if c.b != nil {
		c.s.recycle(c.b)
		c.b = nil
	}
	for {
		select {
		case b, ok := <-c.s.out:
			if !ok {
				return false, nil
			}
			if len(b.lines) == 0 {
				c.s.recycle(b)
				continue
			}
			c.b, c.i = b, 0
			return true, nil
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
}

func (c *cursor) key() int64 { return c.b.lines[c.i].key }

// less orders cursors by their current line's time, then by container, so that lines
// with equal times come out in a stable order.
func less(a, b *cursor) bool {
	ka, kb := a.key(), b.key()
	return ka < kb || ka == kb && a.s.idx < b.s.idx
}

// merge prints the lines of all streams in time order: a k-way merge over a heap of
// cursors. Within a stream the order of the files is kept whatever the times say, so a
// line without a time (raw files) stays where it was written.
func merge(ctx context.Context, streams []*stream, pr *printer) error {
	h := make([]*cursor, 0, len(streams))
	for _, s := range streams {
		c := &cursor{s: s}
		ok, err := c.next(ctx)
		if err != nil {
			return err
		}
		if ok {
			h = append(h, c)
		}
	}
	for i := len(h)/2 - 1; i >= 0; i-- {
		siftDown(h, i)
	}
	for len(h) > 0 {
		c := h[0]
		pr.line(c.s.info, c.b, &c.b.lines[c.i])
		c.i++
		if c.i == len(c.b.lines) {
			ok, err := c.next(ctx)
			if err != nil {
				return err
			}
			if err := pr.err(); err != nil {
				return fmt.Errorf("writing output: %w", err)
			}
			if !ok {
				last := len(h) - 1
				h[0] = h[last]
				h = h[:last]
			}
		}
		if len(h) > 1 {
			siftDown(h, 0)
		}
	}
	return nil
}

func siftDown(h []*cursor, i int) {
	for {
		l := 2*i + 1
		if l >= len(h) {
			return
		}
		m := l
		if r := l + 1; r < len(h) && less(h[r], h[l]) {
			m = r
		}
		if !less(h[m], h[i]) {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}
