package discovery

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFormatAddressInvertsRoutingID matters because a wrong formatAddress
// would not make discovery wrong, only slow: every PF would silently fall
// back to reading each virtfnN link.
func TestFormatAddressInvertsRoutingID(t *testing.T) {
	t.Parallel()
	for _, a := range []string{"0000:00:00.0", "0000:3b:02.7", "abcd:ff:1f.7", "0001:a0:10.3"} {
		domain, rid, ok := routingID(a)
		if !ok {
			t.Fatalf("routingID(%q) failed", a)
		}
		if got := formatAddress(domain, rid); got != a {
			t.Errorf("formatAddress(routingID(%q)) = %q", a, got)
		}
	}
}

func TestFirstEntryAndReadInt(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if err := os.Mkdir(filepath.Join(dir, "empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "net"), 0o755); err != nil {
		t.Fatal(err)
	}
	write("net/eth0", "")
	if got := FirstEntry(filepath.Join(dir, "net")); got != "eth0" {
		t.Errorf("FirstEntry(net) = %q, want eth0", got)
	}
	for _, d := range []string{"empty", "missing", "net/eth0"} { // "." and ".." only; absent; not a dir
		if got := FirstEntry(filepath.Join(dir, d)); got != "" {
			t.Errorf("FirstEntry(%s) = %q, want empty", d, got)
		}
	}
	tests := []struct {
		name, content string
		want          int
	}{
		{"numa", "1\n", 1},
		{"neg", "-1\n", -1},
		{"big", "256\n", 256},
		{"text", "up\n", 7},
		{"empty", "", 7},
		{"long", strings.Repeat("1", 100), 7},
	}
	for _, tt := range tests {
		if got := readInt(write("f_"+tt.name, tt.content), 7); got != tt.want {
			t.Errorf("readInt(%q) = %d, want %d", tt.content, got, tt.want)
		}
	}
	if got := readInt(filepath.Join(dir, "absent"), 7); got != 7 {
		t.Errorf("readInt(absent) = %d, want default", got)
	}
}

func TestLinkBase(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	long := "../../" + strings.Repeat("x/", 200) + "0000:3b:00.0" // longer than the stack buffer
	for name, dest := range map[string]string{"short": "../0000:3b:00.0", "long": long} {
		if err := os.Symlink(dest, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
		if got, ok := linkBase(filepath.Join(dir, name)); !ok || got != "0000:3b:00.0" {
			t.Errorf("linkBase(%s) = %q, %v", name, got, ok)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"file", "absent"} {
		if got, ok := linkBase(filepath.Join(dir, name)); ok {
			t.Errorf("linkBase(%s) = %q, true; want not a link", name, got)
		}
	}
}
