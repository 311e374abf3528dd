package shiminstall

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeExec(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestInstall(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// existing is the destination's content before Install; nil: none.
		existing    []byte
		existingMod fs.FileMode
		src         []byte
		wantChanged bool
	}{
		{name: "fresh install", src: []byte("#!/bin/sh\necho new\n"), wantChanged: true},
		{name: "upgrade", existing: []byte("#!/bin/sh\necho old\n"), existingMod: 0o755, src: []byte("#!/bin/sh\necho new\n"), wantChanged: true},
		{name: "same size, other content", existing: []byte("#!/bin/sh\necho AAA\n"), existingMod: 0o755, src: []byte("#!/bin/sh\necho BBB\n"), wantChanged: true},
		{name: "identical", existing: []byte("#!/bin/sh\necho same\n"), existingMod: 0o755, src: []byte("#!/bin/sh\necho same\n"), wantChanged: false},
		{name: "identical content, wrong mode", existing: []byte("#!/bin/sh\necho same\n"), existingMod: 0o600, src: []byte("#!/bin/sh\necho same\n"), wantChanged: true},
		{name: "empty source", existing: []byte("x"), existingMod: 0o755, src: []byte{}, wantChanged: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srcDir, dstDir := t.TempDir(), t.TempDir()
			src := filepath.Join(srcDir, "plexus-shim")
			dst := filepath.Join(dstDir, BinaryName)
			writeExec(t, src, tt.src)
			if tt.existing != nil {
				writeExec(t, dst, tt.existing)
				if err := os.Chmod(dst, tt.existingMod); err != nil {
					t.Fatal(err)
				}
			}
			changed, err := Install(src, dstDir)
			if err != nil {
				t.Fatalf("Install: %v", err)
			}
			if changed != tt.wantChanged {
				t.Errorf("changed = %v, want %v", changed, tt.wantChanged)
			}
			got, err := os.ReadFile(dst)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.src) {
				t.Errorf("installed %q, want %q", got, tt.src)
			}
			st, err := os.Stat(dst)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode() != Mode {
				t.Errorf("mode %v, want %v", st.Mode(), Mode)
			}
			entries, err := os.ReadDir(dstDir)
			if err != nil || len(entries) != 1 {
				t.Errorf("destination holds %v (%v), want only %s: a temp file was left", entries, err, BinaryName)
			}

			// A second install never changes anything.
			changed, err = Install(src, dstDir)
			if err != nil || changed {
				t.Errorf("second Install: changed %v, err %v", changed, err)
			}
		})
	}
}

func TestInstallErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	src := filepath.Join(dir, "shim")
	writeExec(t, src, []byte("bin"))
	notDir := filepath.Join(dir, "file")
	writeExec(t, notDir, []byte("x"))
	dstIsDir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dstIsDir, BinaryName), 0o755); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		src, dst string
		mention  string // a path the error must name
		notExist bool
	}{
		{name: "destination directory missing", src: src, dst: filepath.Join(dir, "no", "bin"), mention: filepath.Join(dir, "no", "bin"), notExist: true},
		{name: "destination is a file", src: src, dst: notDir, mention: notDir},
		{name: "source missing", src: filepath.Join(dir, "missing"), dst: t.TempDir(), mention: filepath.Join(dir, "missing"), notExist: true},
		{name: "source is a directory", src: dir, dst: t.TempDir(), mention: dir},
		{name: "destination binary path is a directory", src: src, dst: dstIsDir, mention: filepath.Join(dstIsDir, BinaryName)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			changed, err := Install(tt.src, tt.dst)
			if err == nil {
				t.Fatalf("Install(%s, %s) succeeded", tt.src, tt.dst)
			}
			if changed {
				t.Errorf("changed = true on error")
			}
			if !strings.Contains(err.Error(), tt.mention) {
				t.Errorf("error %q does not name %s", err, tt.mention)
			}
			if tt.notExist && !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("error %v does not wrap ErrNotExist", err)
			}
		})
	}
}
