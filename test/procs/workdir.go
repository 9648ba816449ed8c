package procs

import "os"

// WorkDir is a harness's work folder: dir, made if missing, or a new temporary folder named
// prefix* when dir is empty (temp reports that, for the caller to remove after a correct run).
func WorkDir(dir, prefix string) (path string, temp bool, err error) {
	if dir == "" {
		path, err = os.MkdirTemp("", prefix)
		return path, true, err
	}
	return dir, false, os.MkdirAll(dir, 0o755)
}
