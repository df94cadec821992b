package procstat

import (
	"bytes"
	"os"
	"strconv"
)

// readOS fills the open files, threads and RSS from /proc/self.
func readOS(s *Stats) {
	if d, err := os.Open("/proc/self/fd"); err == nil {
		names, err := d.Readdirnames(-1)
		d.Close()
		if err == nil {
			s.OpenFiles = max(len(names)-1, 0) // the directory being read is one of them
		}
	}
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return
	}
	s.Threads = int(statusField(b, "Threads:"))
	s.RSSBytes = statusField(b, "VmRSS:") * 1024 // in kB
}

// statusField is the first number on the line of /proc/self/status that starts with name,
// 0 when there is none.
func statusField(b []byte, name string) int64 {
	for line := range bytes.Lines(b) {
		if rest, ok := bytes.CutPrefix(line, []byte(name)); ok {
			if f := bytes.Fields(rest); len(f) > 0 {
				v, _ := strconv.ParseInt(string(f[0]), 10, 64)
				return v
			}
			return 0
		}
	}
	return 0
}
