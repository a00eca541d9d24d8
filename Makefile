# Custody. `make run` is the main job, `make test` what CI runs.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
GO ?= go
STACK := scripts/stack
STATICCHECK_VERSION := v0.8.2
GOTESTSUM := $(GO) run gotest.tools/gotestsum@v1.13.0
# The stack's addresses and generated credentials, exported for the command.
WITH_STACK := set -a; . .stack/env; set +a;

.PHONY: build test test-unit test-faults test-cluster run bench bench-archive bench-hold bench-serve bench-export bench-console bench-needle bench-ingest bench-otlp lint stack-up stack-down stack-status clean

build:
	$(GO) build -o bin/custody ./cmd/custody

# Lint and the fast unit tests (-short) first, so both stay green; then unit
# and integration tests together against the real Kafka and MinIO, then the
# fault-injection suite (which stops and restarts them, so it runs alone),
# then the cluster fault suite on three Kafka nodes and four MinIO drives
# (make test-cluster). The stacks are the secure ones: Kafka over SASL_SSL
# with SCRAM and ACLs, MinIO over HTTPS (docs/DEPLOY.md). About 25 minutes
# on two cores.
# The stack is brought down whether the tests pass or not; the exit code is
# the first failure's.
test:
	scripts/test-deps
	$(MAKE) lint
	$(MAKE) test-unit
	$(STACK) up --secure
	rc=0; $(WITH_STACK) $(GOTESTSUM) --format pkgname-and-test-fails -- -race -count=1 -timeout 30m ./... || rc=$$?; \
	$(WITH_STACK) $(GOTESTSUM) --format pkgname-and-test-fails -- -tags faults -p 1 -count=1 -timeout 30m ./test/faults/ || rc=$$?; \
	$(STACK) down; \
	$(MAKE) test-cluster || rc=$$?; exit $$rc

# The cluster fault suite: three Kafka nodes (RF 3, min ISR 2) and MinIO on
# four drives, over TLS (scripts/stack up --secure --cluster); a broker
# killed mid-ingest and mid-archive, a drive taken away, the controller
# restarted, the archiver group scaled 1 -> 3 -> 1 over 1M events. It
# restarts the stack in that topology and stops it at the end.
test-cluster:
	$(STACK) down
	$(STACK) up --secure --cluster
	rc=0; $(WITH_STACK) $(GOTESTSUM) --format standard-verbose -- -tags 'faults cluster' -run '^TestCluster' -p 1 -count=1 -timeout 40m ./test/faults/ || rc=$$?; \
	$(STACK) down; exit $$rc

# The fault-injection suite alone, on a running stack (make stack-up).
test-faults:
	$(WITH_STACK) $(GOTESTSUM) --format standard-verbose -- -tags faults -p 1 -count=1 -timeout 30m ./test/faults/

# Fast tests only: integration tests skip under -short.
test-unit:
	$(GO) test -short -count=1 ./...

# The main job: stack up, then scripts/run: build, keys and bucket ready,
# custody ingest and custody archive run with a small synthetic workload
# sent through them, waited for until stored, and a query to copy that was
# checked to find it. Ctrl-C stops the services; make stack-down stops
# Kafka and MinIO.
run: stack-up
	scripts/run

# Benchmarks, the end-to-end ones against the real stack. Raw output goes to
# docs/bench/ (not committed); docs/BENCHMARKS.md holds the reviewed medians.
bench: stack-up
	mkdir -p docs/bench
	{ uname -m; grep -m1 'model name' /proc/cpuinfo; nproc; $(GO) version; date -u; \
	  $(WITH_STACK) $(GO) test -run '^$$' -bench . -benchmem -count 5 ./...; } | tee docs/bench/latest.txt

# End-to-end archiver benchmark: 2,000,000 events through the real Kafka
# and MinIO (docs/BENCHMARKS.md).
bench-archive: stack-up
	mkdir -p docs/bench
	$(WITH_STACK) $(GO) test -tags benchend -run '^$$' -bench Archive2M -benchtime 1x -timeout 60m -v ./test/bench/ | tee docs/bench/archive-latest.txt

# custody ingest as a separate process: the realistic dataset posted as
# NDJSON through the real Kafka; events per CPU-second of ingest alone
# (docs/BENCHMARKS.md).
bench-ingest: stack-up
	mkdir -p docs/bench
	$(WITH_STACK) $(GO) test -tags benchend -run '^$$' -bench BenchmarkIngest -benchtime 1x -count 3 -timeout 30m -v ./test/bench/ | tee docs/bench/ingest-latest.txt

# issue 17: OTLP/HTTP protobuf against NDJSON through the real Kafka, the
# same realistic events in one run; events per CPU-second (docs/BENCHMARKS.md).
# Three rounds, each running every format once: -count 3 would run each
# format's three in a row, and the host's drift would fall between formats.
bench-otlp: stack-up
	mkdir -p docs/bench
	$(WITH_STACK) for i in 1 2 3; do $(GO) test -run '^$$' -bench 'BenchmarkIngestOTLP$$' -benchtime 60x -count 1 -timeout 30m ./ingest/ || exit 1; done | tee docs/bench/otlp-latest.txt

# hold place over 30 days of 1,000,000 events a day (docs/BENCHMARKS.md):
# builds a 30M-event archive in MinIO first (about 3 GB), then times two holds.
bench-hold: stack-up
	mkdir -p docs/bench
	$(WITH_STACK) $(GO) test -tags benchend -run '^$$' -bench HoldPlace30d -benchtime 1x -timeout 90m -v ./test/bench/ | tee docs/bench/hold-latest.txt

# the console in headless Chromium: time to first row of a needle search
# over the 30-day archive (docs/BENCHMARKS.md); builds it first (~6 min)
bench-console: stack-up
	mkdir -p docs/bench
	scripts/test-deps
	$(WITH_STACK) $(GO) test -tags benchend -run '^$$' -bench ConsoleFirstRow -benchtime 1x -timeout 90m -v ./test/bench/ | tee docs/bench/console-latest.txt

# custody serve over loopback HTTPS against the in-process engine, and the
# peak RSS of 50 concurrent queries (docs/BENCHMARKS.md).
bench-serve: stack-up
	mkdir -p docs/bench
	$(WITH_STACK) $(GO) test -tags benchend -run '^$$' -bench BenchmarkServe -benchtime 1x -timeout 60m -v ./test/bench/ | tee docs/bench/serve-latest.txt

# issue 16's needle: one IP over 30 days x 1M events a day on the real
# MinIO against the full scan of the range (docs/BENCHMARKS.md); builds the
# archive first.
bench-needle: stack-up
	mkdir -p docs/bench
	$(WITH_STACK) $(GO) test -tags benchend -run '^$$' -bench BenchmarkNeedle30d -benchtime 1x -timeout 60m -v ./test/bench/ | tee docs/bench/needle-latest.txt

# a disclosure of ~10M events through custody serve: events/s and peak RSS
# (docs/BENCHMARKS.md); builds a ~13M-event archive first.
bench-export: stack-up
	mkdir -p docs/bench
	$(WITH_STACK) $(GO) test -tags benchend -run '^$$' -bench BenchmarkExport -benchtime 1x -timeout 90m -v ./test/bench/ | tee docs/bench/export-latest.txt

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted" >&2; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags faults ./test/faults/
	$(GO) vet -tags 'faults cluster' ./test/faults/
	$(GO) vet -tags benchend ./test/bench/
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

stack-up:
	$(STACK) up --secure

stack-down:
	$(STACK) down

stack-status:
	$(STACK) status

clean: stack-down
	rm -rf bin .stack
