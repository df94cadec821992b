// Package bufpool offers gRPC a buffer pool sized for sockagent's messages. Importing it
// changes nothing; a program opts in by calling Install from its main, before it creates any
// gRPC server or client, because the pool is the whole process's.
package bufpool

import (
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/mem"
)

// slack is what a message holds beyond its data: 64 KiB of data fit a 68 KiB buffer.
const slack = 4 << 10

// Install gives gRPC (every server and client of the process) a buffer pool with a size class
// just above each power of two from 64 KiB to 4 MiB. gRPC's default pool jumps from 32 KiB to
// 1 MiB and zeroes every buffer it lends, so an Attach message of 64 KiB and a few bytes would
// take, and clear, a 1 MiB buffer on marshal and on receive. SetDefaultBufferPool is the only
// way to reach the pool of gRPC's proto codec; call Install once, before any server or client
// exists (gRPC reads the default pool when it builds them).
func Install() {
	experimental.SetDefaultBufferPool(mem.NewTieredBufferPool(256, 4<<10, 16<<10, 32<<10,
		64<<10+slack, 128<<10+slack, 256<<10+slack, 512<<10+slack, 1<<20+slack, 4<<20+slack))
}
