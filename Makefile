# The README's commands. `make demo` and `make test` do all set-up on a fresh Debian/Ubuntu machine.
SWIFT ?= swift
PEACH := .build/debug/peach

.PHONY: all deps build test demo bench bench-hot-paths fuzz clean

all: build

deps:
	@scripts/ensure-deps.sh

build: deps
	$(SWIFT) build

test: build
	$(SWIFT) build --build-tests
	$(SWIFT) test

demo: build
	@scripts/demo.sh $(PEACH)

# The full benchmark suite with a release build; reports (markdown, SVG, JSON) in bench-report/.
bench: deps
	$(SWIFT) build -c release
	@scripts/bench.sh .build/release/peach bench-report

# The package-benchmark suites of the hot paths (their own package, as swift-nio's).
bench-hot-paths:
	cd Benchmarks && $(SWIFT) package benchmark

# libFuzzer targets with AddressSanitizer over the frame codecs and the request processor,
# each for FUZZ_SECONDS (default 600); sanitizer build in .build-fuzz, findings in fuzz-out/.
FUZZ_SECONDS ?= 600
fuzz: deps
	FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz.sh

clean:
	rm -rf .build .build-fuzz fuzz-out
