# Deceive: train a network on MNIST, fool it, attack it, defend it.
#   make demo    the whole story on a laptop CPU (fetches what it needs)
#   make test    the test suite (release build with testing enabled)
#   make bench   throughput against the machine's OpenBLAS sgemm roofline

SWIFT ?= swift
# One build configuration for everything, so that tests, demo and bench share one build.
FLAGS = -c release -Xswiftc -enable-testing
BIN = $(shell $(SWIFT) build $(FLAGS) --show-bin-path 2>/dev/null)
DECEIVE = $(BIN)/deceive

.PHONY: deps build data demo render images test bench clean

deps:
	@scripts/deps.sh

build: deps
	$(SWIFT) build $(FLAGS)

data: build
	$(DECEIVE) data fetch

demo: data
	$(DECEIVE) demo --output out/demo

# Renders the demo's report in headless Chromium, to look at it as a person would.
render: demo
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -qq chromium >/dev/null; }
	chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1100,9000 \
		--screenshot=out/demo/report.png file://$(CURDIR)/out/demo/report.html
	@echo "render: out/demo/report.png"

# The README's pictures, made by the tool itself.
images: demo
	mkdir -p docs/images
	cp out/demo/fooling.png out/demo/attack-pgd.png out/demo/fooling-within.png docs/images/

test: data
	$(SWIFT) test $(FLAGS)

bench: build
	$(BIN)/deceive-bench --output out/bench.json

clean:
	rm -rf .build out
