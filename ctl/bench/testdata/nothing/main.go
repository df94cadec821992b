// Command nothing prints "ok" and exits: the floor under sockbench's sockctl row, what
// starting any Go process costs on this machine. Built by path; `go build ./...` skips testdata.
package main

import "os"

func main() { _, _ = os.Stdout.WriteString("ok\n") }
