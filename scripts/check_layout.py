#!/usr/bin/env python3
"""Independent check that a Deceive checkpoint uses PyTorch's names and layouts.

Loads the file with the `safetensors` package (numpy flavour), runs the `seed`
architecture with PyTorch's semantics written out in numpy (cross-correlation with
weights [out, in, kh, kw], floor-mode 2x2 max pooling, flatten in C,H,W order,
Linear weights [out, in]), and prints the test accuracy to compare with
`deceive evaluate --count N`.

    pip install safetensors numpy
    python3 scripts/check_layout.py models/mnist-cnn.safetensors 2000
"""
import os
import struct
import sys

import numpy as np
from safetensors.numpy import load_file


def idx(path):
    data = open(path, "rb").read()
    rank = data[3]
    dims = struct.unpack(">" + "I" * rank, data[4:4 + 4 * rank])
    return np.frombuffer(data, np.uint8, offset=4 + 4 * rank).reshape(dims)


def conv(x, weight, bias):
    k = weight.shape[2]
    windows = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(2, 3))
    return np.einsum("nchwij,ocij->nohw", windows, weight) + bias[None, :, None, None]


def pool(x):
    n, c, h, w = x.shape
    return x[:, :, : h // 2 * 2, : w // 2 * 2].reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "models/mnist-cnn.safetensors"
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    data = os.environ.get("DECEIVE_DATA_DIR", os.path.expanduser("~/.cache/deceive/datasets"))
    w = load_file(path)
    images = idx(f"{data}/mnist/t10k-images-idx3-ubyte")[:count].astype(np.float32) / 255
    labels = idx(f"{data}/mnist/t10k-labels-idx1-ubyte")[:count]
    x = images[:, None]
    x = pool(np.maximum(conv(x, w["conv1.weight"], w["conv1.bias"]), 0))
    x = pool(np.maximum(conv(x, w["conv2.weight"], w["conv2.bias"]), 0))
    x = np.maximum(x.reshape(len(x), -1) @ w["fc1.weight"].T + w["fc1.bias"], 0)
    x = x @ w["fc2.weight"].T + w["fc2.bias"]
    print(f"{path}: accuracy {100 * (x.argmax(1) == labels).mean():.2f}% on {count} test images (numpy, PyTorch layouts)")


if __name__ == "__main__":
    main()
