# The README's commands. `make demo` and `make test` do all set-up on a fresh Debian/Ubuntu machine.
SWIFT ?= swift
# Package.resolved is committed: every clone builds the dependencies it names, nothing newer.
RESOLVED := --force-resolved-versions
PEACH := .build/debug/peach

.PHONY: all deps build test demo bench bench-hot-paths fuzz clean install install-files uninstall

all: build

deps:
	@scripts/ensure-deps.sh

build: deps
	$(SWIFT) build $(RESOLVED)

test: build
	@scripts/ensure-deps.sh test
	@scripts/check-imports.py
	$(SWIFT) build $(RESOLVED) --build-tests
	$(SWIFT) test $(RESOLVED)

demo: build
	@scripts/demo.sh $(PEACH)

# The full benchmark suite with a release build; reports (markdown, SVG, JSON) in bench-report/.
bench: deps
	$(SWIFT) build $(RESOLVED) -c release
	@scripts/bench.sh .build/release/peach bench-report

# The package-benchmark suites of the hot paths (their own package, as swift-nio's).
bench-hot-paths:
	cd Benchmarks && $(SWIFT) package benchmark

# libFuzzer targets with AddressSanitizer over the frame codecs and the request processor,
# each for FUZZ_SECONDS (default 600); sanitizer build in .build-fuzz, findings in fuzz-out/.
FUZZ_SECONDS ?= 600
fuzz: deps
	FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz.sh

# `make install PREFIX=/usr/local`: a release build of peach in PREFIX/bin, and mount(8)'s helper
# SBINDIR/mount.fuse.peach (mount looks for helpers in /sbin only), so that `mount -t fuse.peach`
# and fstab lines work. DESTDIR stages the files for a package. The binary uses this machine's
# Swift runtime (/opt/swift), as every build here does.
PREFIX ?= /usr/local
SBINDIR ?= /sbin
install: deps
	$(SWIFT) build $(RESOLVED) -c release
	@$(MAKE) --no-print-directory install-files BINARY=.build/release/peach

# The files only, from an existing build (BINARY).
BINARY ?= .build/release/peach
install-files:
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(SBINDIR)
	install -m 755 $(BINARY) $(DESTDIR)$(PREFIX)/bin/peach
	ln -sf $(PREFIX)/bin/peach $(DESTDIR)$(SBINDIR)/mount.fuse.peach

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/peach $(DESTDIR)$(SBINDIR)/mount.fuse.peach

clean:
	rm -rf .build .build-fuzz fuzz-out
