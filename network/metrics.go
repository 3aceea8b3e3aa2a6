package network

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics, when Config.Metrics is set, registered there by New, in the
// "skipwire_network" namespace. Channel labels name channels of this node's
// conduits and processors only, never a name a peer made up. Wrap the
// registerer with prometheus.WrapRegistererWith to tell several Networks of
// one process apart; a Network reuses collectors an earlier one registered.
//
//	skipwire_network_messages_total{channel,direction}  messages sent ("out") and handed to a processor
//	                                                    ("in"), messages to self included
//	skipwire_network_queued{channel}                    messages waiting for the processor
//	skipwire_network_requests_total{channel,result}     Requests by result: ok, no_processor,
//	                                                    remote_closed, timeout, closed, error
//	skipwire_network_request_duration_seconds{channel}  round trip of the Requests answered, histogram
//	skipwire_network_replies_dropped_total              replies nobody waited for
//	skipwire_network_no_processor_total                 messages for a channel without a processor
//	skipwire_network_rejected_total{reason}             envelopes rejected: malformed, unknown_kind,
//	                                                    bad_channel, forged_call, over_window,
//	                                                    bad_credit, stale
type metrics struct {
	messages       *prometheus.CounterVec
	queued         *prometheus.GaugeVec
	requests       *prometheus.CounterVec
	latency        *prometheus.HistogramVec
	repliesDropped prometheus.Counter
	noProc         prometheus.Counter
	rejects        *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	const ns, sub = "skipwire", "network"
	x := &metrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "messages_total",
			Help: "Messages sent (out) and handed to a processor (in)."}, []string{"channel", "direction"}),
		queued: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "queued",
			Help: "Messages waiting for the processor."}, []string{"channel"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "requests_total",
			Help: "Requests, by result."}, []string{"channel", "result"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "request_duration_seconds",
			Help: "Round trip of the Requests answered.", Buckets: prometheus.ExponentialBuckets(1e-5, 4, 10)}, []string{"channel"}),
		repliesDropped: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "replies_dropped_total",
			Help: "Replies nobody waited for."}),
		noProc: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "no_processor_total",
			Help: "Messages for a channel without a processor."}),
		rejects: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "rejected_total",
			Help: "Envelopes rejected, by reason."}, []string{"reason"}),
	}
	var err error
	if x.messages, err = register(reg, x.messages); err != nil {
		return nil, err
	}
	if x.queued, err = register(reg, x.queued); err != nil {
		return nil, err
	}
	if x.requests, err = register(reg, x.requests); err != nil {
		return nil, err
	}
	if x.latency, err = register(reg, x.latency); err != nil {
		return nil, err
	}
	if x.repliesDropped, err = register(reg, x.repliesDropped); err != nil {
		return nil, err
	}
	if x.noProc, err = register(reg, x.noProc); err != nil {
		return nil, err
	}
	if x.rejects, err = register(reg, x.rejects); err != nil {
		return nil, err
	}
	for _, r := range []string{rejectMalformed, rejectUnknownKind, rejectBadChannel, rejectForgedCall, rejectOverWindow, rejectBadCredit, rejectStale} {
		x.rejects.WithLabelValues(r)
	}
	return x, nil
}

// register registers c with reg, or returns the collector of the same
// description already registered there.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, fmt.Errorf("register metrics: %w", err)
	}
	return c, nil
}

func (x *metrics) sent(ch Channel) {
	if x != nil {
		x.messages.WithLabelValues(string(ch), "out").Inc()
	}
}

func (x *metrics) received(ch Channel) {
	if x != nil {
		x.messages.WithLabelValues(string(ch), "in").Inc()
	}
}

func (x *metrics) queuedAdd(ch Channel, n int) {
	if x != nil && n != 0 {
		x.queued.WithLabelValues(string(ch)).Add(float64(n))
	}
}

func (x *metrics) request(ch Channel, err error, d time.Duration) {
	if x == nil {
		return
	}
	result := "error"
	switch {
	case err == nil:
		result = "ok"
		x.latency.WithLabelValues(string(ch)).Observe(d.Seconds())
	case errors.Is(err, ErrRemoteClosed):
		result = "remote_closed"
	case errors.Is(err, ErrNoProcessor):
		result = "no_processor"
	case errors.Is(err, ErrClosed):
		result = "closed"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		result = "timeout"
	}
	x.requests.WithLabelValues(string(ch), result).Inc()
}

func (x *metrics) replyDropped() {
	if x != nil {
		x.repliesDropped.Inc()
	}
}

func (x *metrics) noProcessor() {
	if x != nil {
		x.noProc.Inc()
	}
}

func (x *metrics) rejected(reason string) {
	if x != nil {
		x.rejects.WithLabelValues(reason).Inc()
	}
}
