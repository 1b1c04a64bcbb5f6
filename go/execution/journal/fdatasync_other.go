//go:build !linux

package journal

import "os"

// fdatasync is fsync where the system has no separate data-only sync.
func fdatasync(f *os.File) error { return f.Sync() }
