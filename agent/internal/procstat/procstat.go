// Package procstat reads the agent process's own resources: goroutines, open files, threads
// and resident memory, which GetInfo reports so that a soak can watch an agent over time.
package procstat

import "runtime"

// Stats are the process's resources at one moment; a field the OS does not tell is 0.
type Stats struct {
	Goroutines int
	OpenFiles  int
	Threads    int
	RSSBytes   int64
}

// Read returns the process's resources now.
func Read() Stats {
	s := Stats{Goroutines: runtime.NumGoroutine()}
	readOS(&s)
	return s
}
