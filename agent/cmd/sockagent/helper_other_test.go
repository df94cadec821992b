//go:build !linux

package main

// runHelper reports that the test binary runs as itself: the helpers it can be started as
// exist on Linux only.
func runHelper() (int, bool) { return 0, false }
