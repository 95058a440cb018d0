# Deceive: train a network on MNIST, fool it, attack it, defend it.
#   make demo    the whole story on a laptop CPU (fetches what it needs)
#   make test    the test suite (release build with testing enabled), then the page in a real browser
#   make bench   throughput against the roofline: the best sgemm among the kernels this CPU runs

SWIFT ?= swift
# One build configuration for everything, so that tests, demo and bench share one build.
FLAGS = -c release -Xswiftc -enable-testing
BIN = $(shell $(SWIFT) build $(FLAGS) --show-bin-path 2>/dev/null)
DECEIVE = $(BIN)/deceive

.PHONY: deps build data demo render images test serve loadtest bench fuzz clean

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
	@scripts/deps.sh test
	$(SWIFT) test $(FLAGS) --skip '^ServerTests\.'
	@# The server's tests get a process of their own: the numeric suites keep both of
	@# Swift's cooperative threads busy for minutes, which starves a live server's handlers.
	$(SWIFT) test $(FLAGS) --filter '^ServerTests\.'
	python3 scripts/browser_test.py $(DECEIVE)

# The interactive page on http://127.0.0.1:8080 (Ctrl-C stops it).
serve: build
	$(DECEIVE) serve

# 40 clients mixing predict and fool for 30 s against a fresh server.
loadtest: build
	python3 scripts/loadtest.py $(DECEIVE) --clients 40 --seconds 30 --json out/loadtest.json

bench: data
	$(BIN)/deceive-bench --output out/bench.json

# libFuzzer on every parser (IDX, safetensors, PNG, checkpoint architecture), each for
# FUZZ_SECONDS; new crashes land in Fuzz/crashes/<target>/ (copy them to Fuzz/regressions/
# and the tests replay them).
FUZZ_SECONDS ?= 60
FUZZ_FLAGS = -c release --scratch-path .build-fuzz -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library -Xswiftc -DFUZZING
fuzz: deps
	$(SWIFT) build $(FUZZ_FLAGS) --product deceive-fuzz
	@for target in idx safetensors png checkpoint; do \
		mkdir -p Fuzz/work/$$target Fuzz/crashes/$$target; \
		echo "fuzz: $$target for $(FUZZ_SECONDS) s"; \
		DECEIVE_FUZZ_TARGET=$$target $$($(SWIFT) build $(FUZZ_FLAGS) --show-bin-path)/deceive-fuzz \
			-max_total_time=$(FUZZ_SECONDS) -max_len=65536 -rss_limit_mb=2048 -print_final_stats=1 \
			-artifact_prefix=Fuzz/crashes/$$target/ Fuzz/work/$$target Fuzz/corpus/$$target 2>&1 \
			| grep -E "stat::number_of_executed_units|ERROR|SUMMARY" || true; \
	done

clean:
	rm -rf .build out
