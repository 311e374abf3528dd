package watch_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
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
			path := filepath.Join(t.TempDir(), "f")
			if err := os.WriteFile(path, []byte("a"), 0o644); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			fired := make(chan struct{}, 10)
			var wg sync.WaitGroup
			wg.Go(func() {
				watch.Path(ctx, path, tt.ident, tt.poll, slog.New(slog.DiscardHandler), func() { fired <- struct{}{} })
			})
			time.Sleep(50 * time.Millisecond) // let the watcher take its baseline
			for i, step := range tt.steps {
				if err := step(path); err != nil {
					t.Fatal(err)
				}
				select {
				case <-fired:
					if !tt.want[i] {
						t.Errorf("step %d fired", i)
					}
				case <-time.After(300 * time.Millisecond):
					if tt.want[i] {
						t.Errorf("step %d did not fire", i)
					}
				}
			}
			cancel()
			wg.Wait() // Path returns once ctx ends
		})
	}
}
