//go:build !linux

package journal

import "os"

// pathIno is the inode of the file at path (0 where files have none).
func pathIno(path string) (uint64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	ino, _ := statIno(fi)
	return ino, nil
}
