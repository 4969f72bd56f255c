# The two commands of the README: `make demo` and `make test`.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)

.PHONY: build demo test vet fuzz bench clean

## build: a static binary in bin/gatehouse
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/gatehouse ./cmd/gatehouse

## demo: run gatehouse on the demo configuration (no root needed) and show routed requests
demo: build
	./demo/run.sh

## test: every test: vet, unit, integration, fuzz seeds and end-to-end against real peers
test:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) test -race -count=1 -timeout 30m ./...

## fuzz: run every fuzz target for FUZZTIME each (default 20s)
FUZZTIME ?= 20s
fuzz:
	./bench/fuzz-all.sh $(FUZZTIME)

## bench: Go benchmarks and the HTTP comparison against HAProxy and nginx
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...
	./bench/http.sh

clean:
	rm -rf bin
