# The two commands of the README: `make demo` and `make test`.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
# Archive timestamps and order come from the last commit, so a release is
# byte-for-byte reproducible from its tag.
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
RELEASE_PLATFORMS ?= linux/amd64 linux/arm64

.PHONY: build release deb image demo test deploy-check vet fuzz bench clean

## build: a static binary in bin/gatehouse
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/gatehouse ./cmd/gatehouse

## release: dist/gatehouse-VERSION-linux-{amd64,arm64}.tar.gz (static binary, systemd unit,
## example configurations, deployment guide) and dist/SHA256SUMS
release:
	rm -rf dist && mkdir -p dist
	set -e; for p in $(RELEASE_PLATFORMS); do \
		os=$${p%/*}; arch=$${p#*/}; name=gatehouse-$(VERSION)-$$os-$$arch; dir=dist/$$name; \
		mkdir -p $$dir/examples $$dir/systemd; \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $$dir/gatehouse ./cmd/gatehouse; \
		cp README.md docs/deploy.md $$dir/; \
		cp configs/examples/*.yaml $$dir/examples/; \
		cp deploy/systemd/gatehouse.service deploy/systemd/gatehouse.sysusers $$dir/systemd/; \
		tar -C dist --sort=name --mtime=@$(SOURCE_DATE_EPOCH) --owner=0 --group=0 --numeric-owner \
			-cf - $$name | gzip -9n > dist/$$name.tar.gz; \
		rm -rf $$dir; \
	done
	cd dist && sha256sum *.tar.gz > SHA256SUMS && cat SHA256SUMS

## deb: dist/gatehouse_DEBVERSION_{amd64,arm64}.deb with dpkg-deb (deploy/debian/build.sh
## says how the Debian version follows from VERSION); DEB_ARCHS and DIST choose what and where
DIST      ?= dist
DEB_ARCHS ?= amd64 arm64
deb:
	set -e; for a in $(DEB_ARCHS); do \
		b=$$(mktemp -d); \
		CGO_ENABLED=0 GOOS=linux GOARCH=$$a $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $$b/gatehouse ./cmd/gatehouse; \
		SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) deploy/debian/build.sh $$a '$(VERSION)' $$b/gatehouse $(DIST); \
		rm -rf $$b; \
	done

## image: dist/gatehouse-VERSION-oci.tar, an OCI archive of the container image for
## IMAGE_PLATFORMS, built by deploy/image (go-containerregistry): no daemon, no base image
IMAGE_PLATFORMS ?= linux/amd64 linux/arm64
REVISION        ?= $(shell git rev-parse HEAD 2>/dev/null)
image:
	mkdir -p $(DIST)
	set -e; b=$$(mktemp -d); trap 'rm -rf $$b' EXIT; args=; \
	for p in $(IMAGE_PLATFORMS); do \
		os=$${p%/*}; arch=$${p#*/}; \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $$b/$$os-$$arch/gatehouse ./cmd/gatehouse; \
		args="$$args -binary $$p=$$b/$$os-$$arch/gatehouse"; \
	done; \
	$(GO) run ./deploy/image -version '$(VERSION)' -revision '$(REVISION)' -epoch $(SOURCE_DATE_EPOCH) \
		-out $(DIST)/gatehouse-$(VERSION)-oci.tar $$args
	@echo $(DIST)/gatehouse-$(VERSION)-oci.tar

## demo: run gatehouse on the demo configuration (no root needed) and show routed requests
demo: build
	./demo/run.sh

## test: every test: vet, staticcheck (pinned in go.mod's tool block), gofmt, unit,
## integration, fuzz seeds and end-to-end against real peers; ./... includes ./deploy,
## the deployment check (see deploy-check). It ends with the tests that skipped and why
## (a real peer not installed), from internal/testsummary.
test:
	$(GO) vet ./...
	$(GO) tool staticcheck ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) test -race -count=1 -timeout 30m -json ./... | $(GO) run ./internal/testsummary

## deploy-check: only the deployment checks: static binary, `gatehouse check` on every
## configs/examples/*.yaml, systemd-analyze verify on the unit, make deb (lintian, install,
## upgrade, purge), make image (skopeo, umoci, podman load), the Dockerfile against both
deploy-check:
	$(GO) test -count=1 -v ./deploy/

## fuzz: run every fuzz target for FUZZTIME each (default 20s)
FUZZTIME ?= 20s
fuzz:
	./bench/fuzz-all.sh $(FUZZTIME)

## bench: Go benchmarks and the HTTP comparison against HAProxy and nginx
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...
	./bench/http.sh

clean:
	rm -rf bin dist
