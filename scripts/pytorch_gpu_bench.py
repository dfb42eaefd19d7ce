"""PyTorch on the GPU, for `worker bench --device cuda` to be compared with.

The same model, data shape, optimiser and timing as the CPU anchor
(`pytorch_mlp_bench.py`): one epoch of an MLP on CIFAR-shaped synthetic data (N x 3072,
10 classes), batch 128, SGD lr 0.01 momentum 0.9; the data sits on the GPU (as ours
does) and each epoch ends with a synchronize. Prints the best epoch's samples/s.
Usage: python pytorch_gpu_bench.py [--n 45000] [--batch 128] [--hidden 512,256]
  [--act relu] [--bn] [--dropout 0.0] [--epochs 3]
"""
import argparse
import time

import torch
import torch.nn as nn

p = argparse.ArgumentParser()
p.add_argument("--n", type=int, default=45000)
p.add_argument("--batch", type=int, default=128)
p.add_argument("--hidden", default="512,256")
p.add_argument("--act", default="relu")
p.add_argument("--bn", action="store_true")
p.add_argument("--dropout", type=float, default=0.0)
p.add_argument("--epochs", type=int, default=3)
a = p.parse_args()
dev = torch.device("cuda")
torch.manual_seed(0)
acts = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "leaky_relu": nn.LeakyReLU}
dims = [3072] + [int(h) for h in a.hidden.split(",")]
layers = []
for i in range(len(dims) - 1):
    layers.append(nn.Linear(dims[i], dims[i + 1]))
    if a.bn:
        layers.append(nn.BatchNorm1d(dims[i + 1]))
    layers.append(acts[a.act]())
    if a.dropout > 0:
        layers.append(nn.Dropout(a.dropout))
layers.append(nn.Linear(dims[-1], 10))
model = nn.Sequential(*layers).to(dev)
x = torch.randn(a.n, 3072, device=dev)
y = torch.randint(0, 10, (a.n,), device=dev)
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
lossf = nn.CrossEntropyLoss()
times = []
for ep in range(a.epochs):
    perm = torch.randperm(a.n, device=dev)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    model.train()
    for i in range(0, a.n, a.batch):
        idx = perm[i:i + a.batch]
        opt.zero_grad(set_to_none=True)
        loss = lossf(model(x[idx]), y[idx])
        loss.backward()
        opt.step()
    torch.cuda.synchronize()
    times.append(time.perf_counter() - t0)
best = min(times)
print(f"torch {torch.__version__} {torch.cuda.get_device_name()} dims={dims}+10 batch={a.batch} bn={a.bn} dropout={a.dropout}")
print(f"epoch_s_min={best:.3f} samples_per_s={a.n / best:.0f}")
