package network

// Short tasks (draining a sender's queue, writing control frames) run on
// worker goroutines that wait for the next task once done, so that a busy
// Network does not start a goroutine per burst of messages, and grow its
// stack again, each time. At most maxIdleWorkers wait; the others return.

// maxIdleWorkers bounds the goroutines a Network keeps waiting for work.
const maxIdleWorkers = 16

// spawn runs f on an idle worker, or on a new one if none waits. Close
// waits for every worker.
func (n *Network) spawn(f func()) {
	select {
	case n.tasks <- f:
	default:
		n.goroutine(func() { n.work(f) })
	}
}

// work runs f, then the tasks handed to it while it waits, until the
// Network closes or enough other workers wait.
func (n *Network) work(f func()) {
	for {
		f()
		if n.idle.Add(1) > maxIdleWorkers {
			n.idle.Add(-1)
			return
		}
		select {
		case f = <-n.tasks:
			n.idle.Add(-1)
		case <-n.ctx.Done():
			n.idle.Add(-1)
			return
		}
	}
}
