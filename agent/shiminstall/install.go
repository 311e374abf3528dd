// Package shiminstall copies the plexus shim into the host's CNI binary
// directory. The agent does it itself at start-up, so the shim on a node
// always matches the agent serving it.
//
// The copy goes to a temp file in the same directory and is renamed over the
// old binary: the runtime may be executing the old one at that moment, and
// opening a running executable for writing fails with ETXTBSY, while a rename
// only swaps the directory entry (running processes keep the old inode).
package shiminstall

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/plexus-cni/plexus/internal/atomicfile"
)

// BinaryName is the shim's file name in the CNI binary directory; it is the
// "type" of the plexus CNI configuration.
const BinaryName = "plexus"

// Mode is the installed binary's permission bits.
const Mode fs.FileMode = 0o755

// Install copies the executable at src to dstDir/plexus, atomically. It does
// nothing (changed=false) when the destination already has the same content
// and mode. dstDir must exist: it is the host's CNI binary directory, and
// creating it would hide a wrong mount.
func Install(src, dstDir string) (changed bool, err error) {
	dst := filepath.Join(dstDir, BinaryName)
	st, err := os.Stat(dstDir)
	if err != nil {
		return false, fmt.Errorf("install shim into %s: %w", dstDir, err)
	}
	if !st.IsDir() {
		return false, fmt.Errorf("install shim into %s: not a directory", dstDir)
	}
	data, err := readRegular(src)
	if err != nil {
		return false, fmt.Errorf("install shim %s: %w", src, err)
	}

	same, modeOK, err := sameContent(dst, data)
	if err != nil {
		return false, fmt.Errorf("install shim %s to %s: %w", src, dst, err)
	}
	if same && modeOK {
		return false, nil
	}
	if same {
		// chmod does not write the file, so it is safe on a running binary
		// and keeps the inode.
		if err := os.Chmod(dst, Mode); err != nil {
			return false, fmt.Errorf("install shim to %s: %w", dst, err)
		}
		return true, nil
	}
	if err := writeNoInherit(dst, data); err != nil {
		return false, fmt.Errorf("install shim %s to %s: %w", src, dst, err)
	}
	if err := syncDir(dstDir); err != nil {
		return true, fmt.Errorf("install shim to %s: %w", dst, err)
	}
	return true, nil
}

// writeNoInherit writes dst atomically while holding syscall.ForkLock for
// reading. A child forked by this process while the temp file is open for
// writing inherits that descriptor until it reaches exec (close-on-exec
// only acts then); if the rename lands in that window, anyone exec'ing the
// new shim gets ETXTBSY (go.dev/issue/22315). The agent forks delegate
// plugins all the time, and the lock makes those forks wait for the
// descriptor to be closed. It is held only when the content changed.
func writeNoInherit(dst string, data []byte) error {
	syscall.ForkLock.RLock()
	defer syscall.ForkLock.RUnlock()
	return atomicfile.Write(dst, data, Mode)
}

// readRegular reads src whole: the shim is a few MiB, and the atomic writer
// takes bytes.
func readRegular(src string) ([]byte, error) {
	f, err := os.Open(src)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", src)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", src, err)
	}
	return data, nil
}

// sameContent compares dst with data by size, then SHA-256, streaming dst so
// an unrelated large file there costs no memory. A missing dst differs.
func sameContent(dst string, data []byte) (same, modeOK bool, err error) {
	f, err := os.Open(dst)
	if errors.Is(err, fs.ErrNotExist) {
		return false, false, nil
	}
	if err != nil {
		return false, false, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return false, false, err
	}
	if !st.Mode().IsRegular() || st.Size() != int64(len(data)) {
		return false, false, nil
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return false, false, fmt.Errorf("read %s: %w", dst, err)
	}
	want := sha256.Sum256(data)
	return bytes.Equal(h.Sum(nil), want[:]), st.Mode().Perm() == Mode, nil
}

// syncDir makes the rename durable: without it a power loss can bring back
// the old directory entry.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
