package contract

import (
	"runtime"
	"runtime/debug"
	"strings"
	"time"
)

// DevVersion is the version of a binary whose module version the Go toolchain did not stamp:
// built outside a VCS checkout, with -buildvcs=false, or as a test binary.
const DevVersion = "dev"

// Build is what a sockagent or sockctl binary knows of its own build, from the module build
// information the Go toolchain embeds (runtime/debug.ReadBuildInfo): nothing is set at link
// time, so every build tool (go build, go install, GoReleaser) yields the same answer.
type Build struct {
	// Version is the main module's version: a release tag (v1.2.3), a pseudo-version
	// (v0.0.0-20260102150405-abcdef123456, with "+dirty" when the tree was modified), or
	// DevVersion when none was stamped.
	Version string
	// Revision is the VCS commit the binary was built from; empty when not stamped.
	Revision string
	// Time is the commit time of Revision; zero when not stamped.
	Time time.Time
	// Modified reports that the working tree had uncommitted changes.
	Modified bool
	// GoVersion is the toolchain that built the binary (go1.26.8).
	GoVersion string
	// Platform is GOOS/GOARCH of the binary.
	Platform string
}

// ReadBuild returns the running binary's Build.
func ReadBuild() Build {
	bi, _ := debug.ReadBuildInfo() // nil when the binary carries none
	return BuildFrom(bi, runtime.GOOS+"/"+runtime.GOARCH)
}

// BuildFrom reads a Build out of bi (nil when the binary carries none) for a binary of
// platform (GOOS/GOARCH).
func BuildFrom(bi *debug.BuildInfo, platform string) Build {
	b := Build{Version: DevVersion, Platform: platform}
	if bi == nil {
		return b
	}
	b.GoVersion = bi.GoVersion
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		b.Version = v
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Revision = s.Value
		case "vcs.time":
			// An unparsable time is left zero: it only decorates the version line.
			b.Time, _ = time.Parse(time.RFC3339, s.Value)
		case "vcs.modified":
			b.Modified = s.Value == "true"
		}
	}
	return b
}

// String is the version as a binary prints it: "VERSION (revision R, committed T, modified,
// GOVERSION GOOS/GOARCH)", leaving out what was not stamped.
func (b Build) String() string {
	var details []string
	if b.Revision != "" {
		details = append(details, "revision "+b.Revision)
	}
	if !b.Time.IsZero() {
		details = append(details, "committed "+b.Time.UTC().Format(time.RFC3339))
	}
	if b.Modified {
		details = append(details, "modified")
	}
	details = append(details, strings.TrimSpace(b.GoVersion+" "+b.Platform))
	return b.Version + " (" + strings.Join(details, ", ") + ")"
}
