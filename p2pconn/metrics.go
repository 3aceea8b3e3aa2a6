package p2pconn

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/skipwire/skipwire/resolver"
)

// metrics holds the collectors NewManager registers in Config.Metrics. The
// documentation of that field is the one list of them, with what each
// counts: keep it in step with newMetrics.
type metrics struct {
	conns       *prometheus.GaugeVec
	connects    *prometheus.CounterVec
	attempts    prometheus.Counter
	retries     prometheus.Counter
	reconnects  prometheus.Counter
	disconnects *prometheus.CounterVec
	idleCloses  prometheus.Counter
	evictions   prometheus.Counter
	fastFails   prometheus.Counter
	probes      *prometheus.CounterVec
	msgsOut     prometheus.Counter
	msgsIn      prometheus.Counter
	bytesOut    prometheus.Counter
	bytesIn     prometheus.Counter
	frameErrs   *prometheus.CounterVec
	limits      [numLimits]prometheus.Counter
	sendTime    prometheus.Histogram
	nextWait    prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns = "skipwire"
	var (
		x    metrics
		msgs = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "messages_total", Help: "Messages sent (out) and received (in)."}, []string{"direction"})
		bs   = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "bytes_total", Help: "Message payload bytes sent (out) and received (in)."}, []string{"direction"})
		errs []error
	)
	// Each collector is registered, or the one already registered under its
	// name is used instead, so that managers sharing a registry (one after
	// another, or at once) add up in the same series.
	reuse := func(c prometheus.Collector) prometheus.Collector {
		c, err := register(reg, c)
		errs = append(errs, err)
		return c
	}
	x.conns, _ = reuse(prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "connections", Help: "Live managed connections."}, []string{"direction"})).(*prometheus.GaugeVec)
	x.connects, _ = reuse(prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "connects_total", Help: "Connect calls that dialed, by result."}, []string{"result"})).(*prometheus.CounterVec)
	x.attempts, _ = reuse(prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "dial_attempts_total", Help: "Dial attempts, first ones and retries."})).(prometheus.Counter)
	x.retries, _ = reuse(prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "dial_retries_total", Help: "Dial attempts after a failed one."})).(prometheus.Counter)
	x.reconnects, _ = reuse(prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "reconnects_total", Help: "Connections re-established to persistent peers."})).(prometheus.Counter)
	x.disconnects, _ = reuse(prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "disconnects_total", Help: "Dead connections, by reason."}, []string{"reason"})).(*prometheus.CounterVec)
	x.idleCloses, _ = reuse(prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "idle_closes_total", Help: "Connections closed by IdleTimeout."})).(prometheus.Counter)
	x.evictions, _ = reuse(prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "evictions_total", Help: "Connections closed to make room at MaxConnections."})).(prometheus.Counter)
	x.fastFails, _ = reuse(prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "fast_failures_total", Help: "Connects failed at once because the peer failed recently."})).(prometheus.Counter)
	x.probes, _ = reuse(prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "probes_total", Help: "Probe calls, by result."}, []string{"result"})).(*prometheus.CounterVec)
	x.frameErrs, _ = reuse(prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "frame_errors_total", Help: "Bad input from remotes, by kind."}, []string{"kind"})).(*prometheus.CounterVec)
	x.sendTime, _ = reuse(prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "send_duration_seconds", Help: "Send latency.",
		Buckets: prometheus.ExponentialBuckets(1e-6, 4, 12)})).(prometheus.Histogram)
	x.nextWait, _ = reuse(prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "next_wait_seconds", Help: "Time Next waited for a message.",
		Buckets: prometheus.ExponentialBuckets(1e-6, 4, 14)})).(prometheus.Histogram)
	lim, _ := reuse(prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "limited_total", Help: "Times a limit held a remote back, by limit."}, []string{"limit"})).(*prometheus.CounterVec)
	msgs, _ = reuse(msgs).(*prometheus.CounterVec)
	bs, _ = reuse(bs).(*prometheus.CounterVec)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	x.msgsOut, x.msgsIn = msgs.WithLabelValues("out"), msgs.WithLabelValues("in")
	x.bytesOut, x.bytesIn = bs.WithLabelValues("out"), bs.WithLabelValues("in")
	for l := range numLimits {
		x.limits[l] = lim.WithLabelValues(l.label())
	}
	for _, d := range []string{"inbound", "outbound"} {
		x.conns.WithLabelValues(d)
	}
	for _, r := range []string{"closed_local", "closed_remote", "left", "lost"} {
		x.disconnects.WithLabelValues(r)
	}
	for _, r := range []string{"ok", "error"} {
		x.probes.WithLabelValues(r)
	}
	for _, k := range []string{"frame", "handshake"} {
		x.frameErrs.WithLabelValues(k)
	}
	return &x, nil
}

// limit names what held a remote back, for skipwire_limited_total.
type limit int

const (
	limitHandshake limit = iota // an inbound stream refused for HandshakeRate
	limitMessage                // the reader paused for MessageRate
	limitMemory                 // the reader paused: the resource manager refused memory
	numLimits
)

// label is the limit's label value in skipwire_limited_total.
func (l limit) label() string {
	return [...]string{"handshake_rate", "message_rate", "memory"}[l]
}

// register registers c with reg and returns it, or returns the collector
// already registered in its place (prometheus.AlreadyRegisteredError), if
// that one is of c's type.
func register(reg prometheus.Registerer, c prometheus.Collector) (prometheus.Collector, error) {
	err := reg.Register(c)
	var already prometheus.AlreadyRegisteredError
	switch {
	case err == nil:
		return c, nil
	case errors.As(err, &already) && sameKind(already.ExistingCollector, c):
		return already.ExistingCollector, nil
	default:
		return c, fmt.Errorf("register metrics: %w", err)
	}
}

// sameKind reports whether a and b are collectors of one Go type.
func sameKind(a, b prometheus.Collector) bool {
	return reflect.TypeOf(a) == reflect.TypeOf(b)
}

func direction(inbound bool) string {
	if inbound {
		return "inbound"
	}
	return "outbound"
}

// The methods below are no-ops on a nil *metrics, so that code paths need no
// checks when metrics are off.

func (x *metrics) connUp(inbound bool) {
	if x != nil {
		x.conns.WithLabelValues(direction(inbound)).Inc()
	}
}

func (x *metrics) connDown(inbound bool, err error) {
	if x == nil {
		return
	}
	x.conns.WithLabelValues(direction(inbound)).Dec()
	reason := "closed_remote"
	var ce *closeError
	switch {
	case isLost(err):
		reason = "lost"
	case errors.Is(err, ErrPeerLeft):
		reason = "left"
	case errors.As(err, &ce) && ce.local:
		reason = "closed_local"
	}
	x.disconnects.WithLabelValues(reason).Inc()
}

func (x *metrics) connectResult(err error) {
	if x == nil {
		return
	}
	result := "ok"
	switch {
	case err == nil:
	case errors.Is(err, resolver.ErrNotFound):
		result = "not_found"
	case errors.Is(err, ErrRefused):
		result = "refused"
	case errors.Is(err, ErrTooManyConnections):
		result = "too_many"
	case errors.Is(err, ErrPeerMismatch):
		result = "peer_mismatch"
	case errors.Is(err, swarm.ErrGaterDisallowedConnection):
		result = "denied"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		result = "canceled"
	default:
		result = "error"
	}
	x.connects.WithLabelValues(result).Inc()
}

func (x *metrics) attempt(n int) {
	if x == nil {
		return
	}
	x.attempts.Inc()
	if n > 0 {
		x.retries.Inc()
	}
}

func (x *metrics) reconnect() {
	if x != nil {
		x.reconnects.Inc()
	}
}

func (x *metrics) frameError(kind string) {
	if x != nil {
		x.frameErrs.WithLabelValues(kind).Inc()
	}
}

func (x *metrics) limited(l limit) {
	if x != nil {
		x.limits[l].Inc()
	}
}

func (x *metrics) sent(n int, since time.Time) {
	if x != nil {
		x.msgsOut.Inc()
		x.bytesOut.Add(float64(n))
		x.sendTime.Observe(time.Since(since).Seconds())
	}
}

func (x *metrics) received(n int) {
	if x != nil {
		x.msgsIn.Inc()
		x.bytesIn.Add(float64(n))
	}
}

func (x *metrics) waited(since time.Time) {
	if x != nil {
		x.nextWait.Observe(time.Since(since).Seconds())
	}
}

func (x *metrics) idleClose() {
	if x != nil {
		x.idleCloses.Inc()
	}
}

func (x *metrics) eviction() {
	if x != nil {
		x.evictions.Inc()
	}
}

func (x *metrics) fastFailure() {
	if x != nil {
		x.fastFails.Inc()
	}
}

func (x *metrics) probe(err error) {
	if x == nil {
		return
	}
	result := "ok"
	if err != nil {
		result = "error"
	}
	x.probes.WithLabelValues(result).Inc()
}
