package watch_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plexus-cni/plexus/deviceplugin/watch"
)

func TestPath(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		ident watch.Identity
		poll  time.Duration
		// steps mutate the file; want is whether a callback must follow.
		steps []func(path string) error
		want  []bool
	}{
		{
			name: "content: rewrite with same bytes is ignored, new bytes fire", ident: watch.Content, poll: time.Hour,
			steps: []func(string) error{
				func(p string) error { return os.WriteFile(p, []byte("a"), 0o644) },
				func(p string) error { return os.WriteFile(p, []byte("b"), 0o644) },
			},
			want: []bool{false, true},
		},
		{
			name: "inode: delete and re-create fires (kubelet restart)", ident: watch.Inode, poll: time.Hour,
			steps: []func(string) error{
				func(p string) error { return os.Remove(p) },
				func(p string) error { return os.WriteFile(p, nil, 0o644) },
			},
			want: []bool{false, true},
		},
		{
			name: "poll fallback alone notices", ident: watch.Content, poll: 10 * time.Millisecond,
			steps: []func(string) error{
				func(p string) error { return os.WriteFile(p, []byte("c"), 0o644) },
			},
			want: []bool{true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path := filepath.Join(dir, "f")
			if err := os.WriteFile(path, []byte("a"), 0o644); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			fired := make(chan struct{}, 10)
			// Path looks at the file only through ident: each call starts
			// a check, and a check starts only after the previous one (and
			// its callback) has returned.
			var checks atomic.Int64
			ident := func(p string) (string, bool) {
				checks.Add(1)
				return tt.ident(p)
			}
			var wg sync.WaitGroup
			wg.Go(func() {
				watch.Path(ctx, path, ident, tt.poll, slog.New(slog.DiscardHandler), func() { fired <- struct{}{} })
			})
			// probe touches another file in the directory until a check
			// begins after it: then the watch (or the poll) is running,
			// and every check begun before has returned. It touches again
			// only after a second, well past the debounce a touch restarts.
			probe := func(what string) {
				t.Helper()
				before := checks.Load()
				for try := 0; checks.Load() <= before; try++ {
					if try == 10*50 {
						t.Fatalf("no check followed %s", what)
					}
					if try%50 == 0 {
						if err := os.WriteFile(filepath.Join(dir, "probe"), nil, 0o644); err != nil {
							t.Fatal(err)
						}
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
			for deadline := time.Now().Add(10 * time.Second); checks.Load() == 0; time.Sleep(5 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("the watcher took no baseline")
				}
			}
			probe("the start")
			for i, step := range tt.steps {
				if err := step(path); err != nil {
					t.Fatal(err)
				}
				if tt.want[i] {
					select {
					case <-fired:
					case <-time.After(10 * time.Second):
						t.Fatalf("step %d did not fire", i)
					}
					continue
				}
				// A check begun after the step has looked at it; one begun
				// after that proves the first (and any callback) returned.
				probe(fmt.Sprintf("step %d", i))
				probe(fmt.Sprintf("the check after step %d", i))
				select {
				case <-fired:
					t.Errorf("step %d fired", i)
				default:
				}
			}
			cancel()
			wg.Wait() // Path returns once ctx ends
		})
	}
}
