package daemon

import (
	"runtime/debug"
	"strings"
)

// Version is the release's version, set at build time (make build:
// -ldflags "-X github.com/cobrowse-connector/cobrowse-connector/cmd/cobrowse-connector/daemon.Version=v1.2.3").
// Empty: BuildVersion reads the build info instead.
var Version = ""

// BuildVersion is the daemon's version: Version when the build set it; else the module's version
// (go install of a tagged release); else the VCS revision the binary was built from, with
// "-dirty" when the tree had changes; else "devel". The startup log and `cobrowse-connector
// version` show it.
func BuildVersion() string {
	if Version != "" {
		return Version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, dirty string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if rev == "" {
		return "devel"
	}
	return "devel-" + rev[:min(12, len(rev))] + dirty
}

// GoVersion is the Go release the binary was built with.
func GoVersion() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		return strings.TrimPrefix(info.GoVersion, "go")
	}
	return "unknown"
}
