package main

// notes say how the figures are taken; the table and BENCHMARKS.md end with
// them.
var notes = []string{
	"rounds: each round takes one sample of every contender on a fresh connection, the contenders in a different order each round; a figure is the median over rounds",
	"ratios: computed in each round from that round's samples, then the median of the per-round ratios; spread is half the interquartile range of the per-round ratios, as a percentage of that median (n/a from one round); a ratio whose spread exceeds 15% is flagged; -quick lists the ratios whose spread exceeds ±10%, which the quick run cannot give to within 10% of a full run's",
	"throughput: fixed message count per sample (after a 5% warm-up on the same connection), timed from the first send until the receiver has every message",
	"write syscalls: write(2) calls per message during a throughput sample, both ends (from /proc/self/io; Linux only); 1.00 means one system call per frame, fewer means frames were coalesced",
	"no acks: skipwire on two nodes whose Managers have p2pconn.Config{ResumeWindow: -1}: neither acknowledgements nor resumption; the acks ratios compare the default (both on) with it",
	"network: a network.Network on each of the skipwire nodes' Managers (started for each sample, default network.Config), Conduit.Send to a processor that counts (8 senders share one conduit; the clock stops when the processor has seen the last message), Conduit.Request answered by Conduit.Reply with the payload; compared with Connection.Send / Next on the same Managers",
	"raw libp2p: the same uvarint framing on a libp2p stream of the same hosts; frames up to 8 KiB copied behind their header in one stream write, larger ones written as header then payload, one sender at a time under a mutex; header bytes read one by one from the stream, no buffer, no reader goroutine",
	"combining: raw libp2p with a combining writer: senders append their frames (copied) to a shared buffer under a mutex; the one that finds no write in progress calls runtime.Gosched, then writes the whole buffer in one stream Write, again while more accumulated; each Send returns after the write that carried its frame; the coalescing ceiling for 8 senders",
	"plain TCP: net.TCPConn, bufio.Writer, 4-byte big-endian length, payload and Flush per message under a mutex; bufio.Reader; no encryption",
	"round trip: 128 B request echoed by the other side; per round p50 and p99 of that round's round trips",
	"cold connect: skipwire Manager.Connect (resolve, dial, secure channel, yamux, stream, handshake round trip); raw libp2p host.Connect + NewStream + a 1-byte round trip; TCP net.Dial + a 1-byte round trip; -connects per contender and round, alternating, the round's figure their median; both hosts drop every connection in between",
	"fan-in: 32 nodes send 128 B messages (one sender each, as fast as the center's Network lets them) to one node's processor through network, on fresh connections each round after a warm-up; queueing delay is from just before Conduit.Send to the processor's call, stamped in the payload",
	"idle memory: live heap (HeapAlloc) + stack spans (StackInuse) after GC, before and after opening the connections, per connection, both ends (both live in this process), kernel socket buffers not included; median over rounds after two warm-up passes, each baseline taken once the previous connections' garbage is gone (libp2p releases it seconds after the close); the heap part is exact, the stack part approximate (the runtime caches freed stacks); raw libp2p and plain TCP have a goroutine parked in a read on each end, the bare libp2p row none; -quick measures skipwire and raw libp2p only, which leaves the time for two rounds",
}
