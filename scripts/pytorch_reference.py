#!/usr/bin/env python3
"""PyTorch on the same work as Deceive's speed claims, for comparison by hand.

    python3 -m venv /tmp/torch && /tmp/torch/bin/pip install torch numpy safetensors
    /tmp/torch/bin/python scripts/pytorch_reference.py [--data-dir ~/.cache/deceive/datasets/mnist]

Measures, on the `seed` architecture (conv32k3 relu maxpool2 conv64k3 relu maxpool2
flatten dense128 relu dense10):
  - training: 19,200 MNIST training images, batch 64, Adam lr 1e-3, one epoch;
  - evaluation: all 10,000 test images of models/mnist-cnn.safetensors, batch 1000;
  - PGD-40 (L∞, ε 0.3, step 0.01, uniform random start) on the first 1,000 test digits.
It also checks that the shipped checkpoint loads into an nn.Module with
safetensors.torch.load_file and prints its accuracy (the README's claim).
"""
import argparse
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file


def read_idx(path):
    with open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


class Net(nn.Module):  # the `seed` architecture
    def __init__(s):
        super().__init__()
        s.conv1, s.conv2 = nn.Conv2d(1, 32, 3), nn.Conv2d(32, 64, 3)
        s.fc1, s.fc2 = nn.Linear(1600, 128), nn.Linear(128, 10)

    def forward(s, x):
        x = F.max_pool2d(F.relu(s.conv1(x)), 2)
        x = F.max_pool2d(F.relu(s.conv2(x)), 2)
        return s.fc2(F.relu(s.fc1(x.flatten(1))))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", default=os.path.expanduser("~/.cache/deceive/datasets/mnist"))
    parser.add_argument("--model", default="models/mnist-cnn.safetensors")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()}")

    train_x = torch.from_numpy(read_idx(f"{args.data_dir}/train-images-idx3-ubyte").astype(np.float32) / 255).unsqueeze(1)
    train_y = torch.from_numpy(read_idx(f"{args.data_dir}/train-labels-idx1-ubyte").astype(np.int64))
    test_x = torch.from_numpy(read_idx(f"{args.data_dir}/t10k-images-idx3-ubyte").astype(np.float32) / 255).unsqueeze(1)
    test_y = torch.from_numpy(read_idx(f"{args.data_dir}/t10k-labels-idx1-ubyte").astype(np.int64))

    torch.manual_seed(1)
    net = Net()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    count, batch = 19200, 64
    order = torch.randperm(count)
    start = time.perf_counter()
    for i in range(0, count, batch):
        index = order[i:i + batch]
        optimizer.zero_grad()
        F.cross_entropy(net(train_x[index]), train_y[index]).backward()
        optimizer.step()
    seconds = time.perf_counter() - start
    print(f"train: {count} images, batch {batch}, Adam: {seconds:.2f} s, {count / seconds:.0f} samples/s")

    shipped = Net()
    shipped.load_state_dict(load_file(args.model))
    shipped.eval()
    with torch.no_grad():
        shipped(test_x[:1000])
        start = time.perf_counter()
        correct = sum((shipped(test_x[i:i + 1000]).argmax(1) == test_y[i:i + 1000]).sum().item()
                      for i in range(0, 10000, 1000))
        seconds = time.perf_counter() - start
    print(f"evaluate: {args.model} {correct / 100:.2f}% on 10000, batch 1000: {10000 / seconds:.0f} images/s")

    for p in shipped.parameters():
        p.requires_grad_(False)
    x, y = test_x[:1000], test_y[:1000]
    eps, step = 0.3, 0.01
    start = time.perf_counter()
    adv = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)
    for _ in range(40):
        adv.requires_grad_(True)
        loss = F.cross_entropy(shipped(adv), y)
        (grad,) = torch.autograd.grad(loss, adv)
        adv = torch.min(torch.max(adv.detach() + step * grad.sign(), x - eps), x + eps).clamp(0, 1)
    with torch.no_grad():
        robust = (shipped(adv).argmax(1) == y).float().mean().item()
    seconds = time.perf_counter() - start
    print(f"pgd-40: eps {eps}, step {step}, 1000 digits: {seconds:.2f} s, robust accuracy {100 * robust:.2f}%")


if __name__ == "__main__":
    main()
