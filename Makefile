# skipwire build targets. Every target needs only Go and the Go module proxy.

GO          ?= go
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
FUZZTIME    ?= 60s
PKGS        ?= ./...

.PHONY: all test vet lint fmt-check tidy-check check tidy apidiff bench scale fuzz soak demo demo-cluster nat-demo

all: test

## demo: a skip graph of 64 local nodes: joins, searches checked against the
## sorted keys, crashes, graceful leaves and joins under search load, repair.
demo:
	$(GO) run ./examples/skipgraph

## demo-cluster: a local multi-node cluster exchanging messages over every pair.
demo-cluster:
	$(GO) run ./examples/cluster

## nat-demo: skipwire behind NAT, in network namespaces (examples/natdemo):
## relay, hole punching, the relay's limits, with figures. Needs root,
## iproute2 and nftables; prints SKIP and exits 0 without them.
nat-demo:
	@d=$$(mktemp -d) && $(GO) build -o $$d/natdemo ./examples/natdemo && \
		{ $$d/natdemo; s=$$?; rm -rf $$d; exit $$s; }

## test: vet, then every test with the race detector in random order.
test: vet
	$(GO) test -race -shuffle=on -count=1 -timeout 14m $(PKGS)

vet:
	$(GO) vet $(PKGS)

## lint: staticcheck at a pinned version, fetched through the module proxy.
lint:
	$(GO) run $(STATICCHECK) $(PKGS)

## fmt-check: fail, listing them, if files are not gofmt-formatted.
fmt-check:
	@files=$$(gofmt -l .); if [ -n "$$files" ]; then echo "not gofmt-formatted:"; echo "$$files"; exit 1; fi

## tidy-check: fail, with the diff, if go mod tidy would change go.mod or go.sum.
tidy-check:
	$(GO) mod tidy -diff

## check: what CI runs before the tests: formatting, go.mod tidiness, staticcheck.
check: fmt-check tidy-check lint

## apidiff: report the exported API's changes since the last release tag
## (golang.org/x/exp's apidiff, pinned in .ci/apidiff).
apidiff:
	GO=$(GO) .ci/apidiff

## tidy: go mod tidy.
tidy:
	$(GO) mod tidy

## bench: Go benchmarks of every package, then examples/bench (skipwire, raw
## libp2p with and without a combining writer, plain TCP, skipwire without
## acknowledgements and the network layer side by side, every ratio with its
## spread); writes BENCHMARKS.md. About 6 minutes; BENCHFLAGS=-quick for a
## short run.
BENCHFLAGS ?=
bench:
	$(GO) test -run '^$$' -bench . -benchmem -timeout 30m $(PKGS) > .bench-go.txt || { cat .bench-go.txt; rm -f .bench-go.txt; exit 1; }
	cat .bench-go.txt
	$(GO) run ./examples/bench $(BENCHFLAGS) -markdown BENCHMARKS.md -gobench .bench-go.txt; s=$$?; rm -f .bench-go.txt; exit $$s

## scale: one node holding 10,000 connections from peers in 4 child processes
## (examples/scale): memory, goroutines and idle CPU per connection and
## Connect latency while it holds them, against raw libp2p. About 3 minutes
## and 6 GiB of memory; SCALEFLAGS=-quick for 1,000 peers in about a minute.
SCALEFLAGS ?=
scale:
	$(GO) run ./examples/scale $(SCALEFLAGS)

## fuzz: every native fuzz target for FUZZTIME each (default 60s).
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "== $$pkg $$f"; \
			$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

## soak: the long versions of the concurrency and churn tests.
soak:
	SKIPWIRE_SOAK=1 $(GO) test -race -count=1 -timeout 60m -run 'Soak|Simultaneous|Churn|LosesNothing|SkipGraph|Resume' -v $(PKGS)
