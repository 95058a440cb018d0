# Deceive: train a network on MNIST, fool it, attack it, defend it.
#   make demo    the whole story on a laptop CPU (fetches what it needs)
#   make test    the test suite (release build with testing enabled)
#   make bench   throughput against the machine's OpenBLAS sgemm roofline

SWIFT ?= swift
# One build configuration for everything, so that tests, demo and bench share one build.
FLAGS = -c release -Xswiftc -enable-testing
BIN = $(shell $(SWIFT) build $(FLAGS) --show-bin-path 2>/dev/null)
DECEIVE = $(BIN)/deceive

.PHONY: deps build data demo test bench clean

deps:
	@scripts/deps.sh

build: deps
	$(SWIFT) build $(FLAGS)

data: build
	$(DECEIVE) data fetch

MODEL = models/mnist-cnn.safetensors

demo: data
	$(DECEIVE) evaluate --model $(MODEL)
	$(DECEIVE) fool --model $(MODEL) --target 5 --output out/demo/fool-5
	$(DECEIVE) fool --model $(MODEL) --all --confidence 0.999 --output out/demo/fool-all
	$(DECEIVE) fool --model $(MODEL) --all --within 0.25 --output out/demo/fool-within
	$(DECEIVE) fool --model $(MODEL) --all --method evolve --output out/demo/fool-evolve
	$(DECEIVE) fool --model $(MODEL) --all --start zeros --regularize l2,tv --output out/demo/class-visualisation
	@echo "demo: pictures in out/demo/*/grid.png"

test: data
	$(SWIFT) test $(FLAGS)

bench: build
	$(BIN)/deceive-bench --output out/bench.json

clean:
	rm -rf .build out
