# The README's commands. `make demo` and `make test` do all set-up on a fresh Debian/Ubuntu machine.
SWIFT ?= swift
PEACH := .build/debug/peach

.PHONY: all deps build test demo clean

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

clean:
	rm -rf .build
