#!/usr/bin/env python3
"""PyTorch on the same work as Deceive's speed claims, for comparison by hand.

    python3 -m venv /tmp/torch && /tmp/torch/bin/pip install torch numpy safetensors
    /tmp/torch/bin/python scripts/pytorch_reference.py [--data-dir ~/.cache/deceive/datasets/mnist]

Measures, on the `seed` architecture (conv32k3 relu maxpool2 conv64k3 relu maxpool2
flatten dense128 relu dense10):
  - training: 19,200 MNIST training images, batch 64, Adam lr 1e-3, one epoch;
  - evaluation: all 10,000 test images of models/mnist-cnn.safetensors, batch 1000;
  - PGD-40 (L∞, ε 0.3, step 0.01, uniform random start) on the first 1,000 test digits,
    of the standard model and of models/mnist-cnn-robust.safetensors (where most digits
    survive, so an attack that stops early for fooled digits still runs all 40 steps).
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


class Net(nn.Module):  # the `seed` architecture (hidden=128); the robust model has hidden=512
    def __init__(s, hidden=128):
        super().__init__()
        s.conv1, s.conv2 = nn.Conv2d(1, 32, 3), nn.Conv2d(32, 64, 3)
        s.fc1, s.fc2 = nn.Linear(1600, hidden), nn.Linear(hidden, 10)

    def forward(s, x):
        x = F.max_pool2d(F.relu(s.conv1(x)), 2)
        x = F.max_pool2d(F.relu(s.conv2(x)), 2)
        return s.fc2(F.relu(s.fc1(x.flatten(1))))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", default=os.path.expanduser("~/.cache/deceive/datasets/mnist"))
    parser.add_argument("--model", default="models/mnist-cnn.safetensors")
    parser.add_argument("--robust-model", default="models/mnist-cnn-robust.safetensors")
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (default: PyTorch's choice)")
    parser.add_argument("--only", choices=["train", "evaluate", "pgd"], help="run one measurement")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()}")

    train_x = torch.from_numpy(read_idx(f"{args.data_dir}/train-images-idx3-ubyte").astype(np.float32) / 255).unsqueeze(1)
    train_y = torch.from_numpy(read_idx(f"{args.data_dir}/train-labels-idx1-ubyte").astype(np.int64))
    test_x = torch.from_numpy(read_idx(f"{args.data_dir}/t10k-images-idx3-ubyte").astype(np.float32) / 255).unsqueeze(1)
    test_y = torch.from_numpy(read_idx(f"{args.data_dir}/t10k-labels-idx1-ubyte").astype(np.int64))

    if args.only in (None, "train"):
        train(train_x, train_y)
    if args.only in (None, "evaluate"):
        evaluate(args.model, test_x, test_y)
    if args.only in (None, "pgd"):
        shipped = load(args.model)
        pgd(shipped, test_x[:1000], test_y[:1000], args.model)
        pgd(load(args.robust_model, hidden=512), test_x[:1000], test_y[:1000], args.robust_model)


def cpu_seconds():
    times = os.times()
    return times.user + times.system


def load(path, hidden=128):
    model = Net(hidden)
    model.load_state_dict(load_file(path))
    model.eval()
    return model


def train(train_x, train_y):
    torch.manual_seed(1)
    net = Net()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    count, batch = 19200, 64
    order = torch.randperm(count)
    start, cpu = time.perf_counter(), cpu_seconds()
    for i in range(0, count, batch):
        index = order[i:i + batch]
        optimizer.zero_grad()
        F.cross_entropy(net(train_x[index]), train_y[index]).backward()
        optimizer.step()
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    print(f"train: {count} images, batch {batch}, Adam: {seconds:.2f} s ({cpu:.2f} s CPU), {count / seconds:.0f} samples/s")


def evaluate(path, test_x, test_y):
    shipped = load(path)
    with torch.no_grad():
        shipped(test_x[:1000])
        start, cpu = time.perf_counter(), cpu_seconds()
        correct = sum((shipped(test_x[i:i + 1000]).argmax(1) == test_y[i:i + 1000]).sum().item()
                      for i in range(0, 10000, 1000))
        seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    print(f"evaluate: {path} {correct / 100:.2f}% on 10000, batch 1000: {seconds:.2f} s ({cpu:.2f} s CPU), "
          f"{10000 / seconds:.0f} images/s")


def pgd(model, x, y, name, eps=0.3, step=0.01, steps=40):
    for p in model.parameters():
        p.requires_grad_(False)
    torch.manual_seed(1)
    start, cpu = time.perf_counter(), cpu_seconds()
    adv = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)
    for _ in range(steps):
        adv.requires_grad_(True)
        loss = F.cross_entropy(model(adv), y)
        (grad,) = torch.autograd.grad(loss, adv)
        adv = torch.min(torch.max(adv.detach() + step * grad.sign(), x - eps), x + eps).clamp(0, 1)
    with torch.no_grad():
        robust = (model(adv).argmax(1) == y).float().mean().item()
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    print(f"pgd-{steps}: {name}, eps {eps}, step {step}, 1000 digits: {seconds:.2f} s ({cpu:.2f} s CPU), "
          f"robust accuracy {100 * robust:.2f}%")

if __name__ == "__main__":
    main()
