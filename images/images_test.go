package images_test

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// The tarballs, set by images/BUILD.bazel: these tests check what Bazel
// built. Under plain `go test` there are none, and the tests skip.
var (
	agentTar        = flag.String("agent", "", "//images:agent tarball")
	devicepluginTar = flag.String("deviceplugin", "", "//images:deviceplugin tarball")
	pauseTar        = flag.String("pause", "", "//images:pause tarball")
	webhookTar      = flag.String("webhook", "", "//images:webhook tarball")
)

// runfile resolves a $(rootpath) given in args: rules_go runs tests in the
// package's directory, not at the workspace root of the runfiles.
func runfile(p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	if dir := os.Getenv("TEST_SRCDIR"); dir != "" {
		return filepath.Join(dir, os.Getenv("TEST_WORKSPACE"), p)
	}
	return p
}

// goarchMachine is the ELF machine of the architecture the test runs on,
// which is the one the images are built for.
var goarchMachine = map[string]elf.Machine{
	"amd64":   elf.EM_X86_64,
	"arm64":   elf.EM_AARCH64,
	"ppc64le": elf.EM_PPC64,
	"s390x":   elf.EM_S390,
	"riscv64": elf.EM_RISCV,
}

func TestImages(t *testing.T) {
	tests := []struct {
		name       string
		tarball    *string
		entrypoint []string
		binaries   []string // static executables the image must hold
	}{
		{"agent", agentTar, []string{"/usr/local/bin/plexus-agent"},
			[]string{"/usr/local/bin/plexus-agent", "/opt/plexus/bin/plexus"}},
		{"deviceplugin", devicepluginTar, []string{"/usr/local/bin/plexus-deviceplugin"},
			[]string{"/usr/local/bin/plexus-deviceplugin"}},
		{"pause", pauseTar, []string{"/pause"}, []string{"/pause"}},
		{"webhook", webhookTar, []string{"/usr/local/bin/plexus-webhook"},
			[]string{"/usr/local/bin/plexus-webhook"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if *tt.tarball == "" {
				t.Skipf("no -%s tarball: run with tools/bazel.sh test //images:images_test", tt.name)
			}
			img, err := tarball.ImageFromPath(runfile(*tt.tarball), nil)
			if err != nil {
				t.Fatalf("read image: %v", err)
			}
			cfg, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if cfg.OS != "linux" || cfg.Architecture != runtime.GOARCH {
				t.Errorf("platform %s/%s, want linux/%s", cfg.OS, cfg.Architecture, runtime.GOARCH)
			}
			if !reflect.DeepEqual(cfg.Config.Entrypoint, tt.entrypoint) {
				t.Errorf("entrypoint %q, want %q", cfg.Config.Entrypoint, tt.entrypoint)
			}

			files := extract(t, img, tt.binaries)
			for _, p := range tt.binaries {
				f, ok := files[p]
				if !ok {
					t.Errorf("%s: not in the image", p)
					continue
				}
				if f.mode&0o111 != 0o111 {
					t.Errorf("%s: mode %o, want executable by all", p, f.mode)
				}
				checkStaticELF(t, p, f.content)
			}
		})
	}
}

type file struct {
	mode    int64
	content []byte
}

// extract returns the regular files named in want from the image's
// flattened filesystem.
func extract(t *testing.T, img v1.Image, want []string) map[string]file {
	t.Helper()
	wanted := map[string]bool{}
	for _, p := range want {
		wanted[p] = true
	}
	rc := mutate.Extract(img)
	defer rc.Close()
	files := map[string]file{}
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		if err != nil {
			t.Fatalf("read image filesystem: %v", err)
		}
		p := "/" + hdr.Name
		if !wanted[p] {
			continue
		}
		if hdr.Typeflag != tar.TypeReg {
			t.Errorf("%s: tar type %q, want a regular file", p, hdr.Typeflag)
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("read %s: %v", p, err)
		}
		files[p] = file{mode: hdr.Mode, content: b}
	}
}

// checkStaticELF fails unless b is an ELF executable for this architecture
// with no program interpreter: the images have no libc and no ld.so.
func checkStaticELF(t *testing.T, name string, b []byte) {
	t.Helper()
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		t.Errorf("%s: not an ELF file: %v", name, err)
		return
	}
	defer f.Close()
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		t.Errorf("%s: ELF type %v, want an executable", name, f.Type)
	}
	if want, ok := goarchMachine[runtime.GOARCH]; ok && f.Machine != want {
		t.Errorf("%s: ELF machine %v, want %v", name, f.Machine, want)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s: has a PT_INTERP program header: dynamically linked, the image has no loader", name)
		}
	}
	if libs, err := f.ImportedLibraries(); err == nil && len(libs) > 0 {
		t.Errorf("%s: needs shared libraries %q", name, libs)
	}
}
