package journal

import (
	"os"
	"syscall"
)

// fdatasync flushes f's data (and the metadata needed to read it back, such as its size) to the
// disk, without the timestamp updates fsync also waits for: on a file overwritten in place, as the
// write-ahead log is once it wraps, that is the disk's cache flush alone.
func fdatasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			if err != nil {
				return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: err}
			}
			return nil
		}
	}
}
