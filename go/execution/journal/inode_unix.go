//go:build unix

package journal

import (
	"fmt"
	"os"
	"syscall"
)

// inode identifies an open file, so a later Stat of its path can tell whether it is the same file.
func inode(f *os.File) (uint64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	ino, ok := statIno(fi)
	if !ok {
		return 0, fmt.Errorf("journal: no inode for %s", f.Name())
	}
	return ino, nil
}

func statIno(fi os.FileInfo) (uint64, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return uint64(st.Ino), true //nolint:unconvert // Ino is not uint64 on every platform
}
