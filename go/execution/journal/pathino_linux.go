package journal

import (
	"os"

	"golang.org/x/sys/unix"
)

// pathIno is the inode of the file at path, asked for alone (statx with STATX_INO). A stat that
// returns the file's times marks them as read, and Linux's fine-grained timestamps (6.13 and
// later) then give the next write a new mtime: on ext4 without a journal, every fdatasync of the
// write-ahead log then wrote its inode too, an extra disk write before the flush (+45 µs p50 per
// commit on the machine of docs/benchmarks.md).
func pathIno(path string) (uint64, error) {
	var sx unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, path, 0, unix.STATX_INO, &sx); err != nil {
		return 0, &os.PathError{Op: "statx", Path: path, Err: err}
	}
	return sx.Ino, nil
}
