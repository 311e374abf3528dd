package attach_test

import "golang.org/x/sys/unix"

// unmountNS removes a bind-mounted network namespace file, as a runtime does
// when it deletes a pod sandbox.
func unmountNS(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil {
		return err
	}
	return unix.Unlink(path)
}
