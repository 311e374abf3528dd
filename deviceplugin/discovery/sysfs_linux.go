package discovery

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// The helpers below use raw syscalls instead of package os because they
// run once or more per PCI function, and os.Open/os.ReadFile cost two to
// three extra syscalls per file (epoll registration, fcntl, fstat for the
// size hint) that a sysfs attribute or a one-entry directory never needs.
// With a thousand VFs those extras were most of discovery's own cost.
// Linux only, like the ghw functions this package already depends on
// (pci.Info.ParseDevice has no other implementation).

// openDir opens dir for getdents, retrying on EINTR.
func openDir(dir string) (int, error) {
	for {
		fd, err := syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
		if err != syscall.EINTR {
			return fd, err
		}
	}
}

// FirstEntry returns one name in dir, or "". Unlike os.ReadDir it neither
// stats nor sorts, which matters when called for every VF.
func FirstEntry(dir string) string {
	fd, err := openDir(dir)
	if err != nil {
		return ""
	}
	defer syscall.Close(fd)
	var buf [4096]byte
	for {
		n, err := syscall.Getdents(fd, buf[:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil || n <= 0 {
			return ""
		}
		// ParseDirent drops "." and ".."; a batch may hold only those.
		if _, _, names := syscall.ParseDirent(buf[:n], 1, nil); len(names) > 0 {
			return names[0]
		}
	}
}

// readInt reads a small decimal sysfs attribute; def when it is missing
// or not a number. Attributes read this way are a few bytes, so one
// read into a stack buffer is enough; a longer file is not a number we
// want.
func readInt(path string, def int) int {
	var fd int
	var err error
	for {
		fd, err = syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		return def
	}
	defer syscall.Close(fd)
	var buf [64]byte
	var n int
	for {
		n, err = syscall.Read(fd, buf[:])
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil || n <= 0 || n == len(buf) {
		return def
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(buf[:n])))
	if err != nil {
		return def
	}
	return v
}

// linkBase returns the last element of the symlink at path; ok is false
// when path is not a readable symlink.
func linkBase(path string) (string, bool) {
	dest, ok := readLink(path)
	if !ok {
		return "", false
	}
	return filepath.Base(dest), true
}

// readLink returns the target of the symlink at path. A stack buffer
// covers sysfs links (a few dozen bytes); anything longer goes through
// os.Readlink.
func readLink(path string) (string, bool) {
	var buf [256]byte
	var n int
	var err error
	for {
		n, err = syscall.Readlink(path, buf[:])
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil || n < 0 {
		return "", false
	}
	if n == len(buf) {
		dest, err := os.Readlink(path)
		if err != nil {
			return "", false
		}
		return dest, true
	}
	return string(buf[:n]), true
}

// dirNames lists dir unsorted and without stat; nil when it cannot be read.
func dirNames(dir string) []string {
	f, err := os.Open(dir)
	if err != nil {
		return nil
	}
	defer f.Close()
	names, _ := f.Readdirnames(-1)
	return names
}
