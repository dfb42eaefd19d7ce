"""PyTorch's best answers to "train a whole grid on one GPU", for `worker bench --pack`.

The grid is gradsweep's ablation grid: activation (sigmoid, tanh, relu) x init
(default, he) x batch norm (off, on) x regularisation (none, l1 1e-4, l2 1e-4,
dropout 0.2) x 2 seeds = 96 trials of a 3072-512-256-10 MLP on CIFAR-shaped synthetic
data (45,000 training samples, 10 classes), batch 128, SGD lr 0.01 momentum 0.9, 40
epochs, each trial with its own shuffle order. Two ways to train it:

  (a) sequential: one trial after the other, each an nn.Sequential with the fastest
      plain settings (data resident on the device, indexing instead of a DataLoader,
      fused/foreach SGD, gradients set to None, cuDNN benchmark mode);
  (b) vmap: trials of the same architecture (same activation and batch norm: the code
      of their forward pass) stacked with torch.func.stack_module_state and trained
      together with torch.func.vmap(grad(...)); init, seed, penalties and dropout
      probability differ per trial inside a stack (6 stacks of 16 trials).

Prints the wall time of each way (and per epoch), with a one-line summary per way.
TF32 is off by default (gradsweep trains in strict f32); --tf32 allows it.

  python scripts/pytorch_vmap_grid.py                       # the full grid on cuda:0
  python scripts/pytorch_vmap_grid.py --device cpu --epochs 1 --n 512 --trials 12
"""
import argparse
import itertools
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import grad, stack_module_state, vmap

ACTS = ["sigmoid", "tanh", "relu"]
INITS = ["default", "he"]
BNS = [False, True]
REGS = ["none", "l1", "l2", "dropout"]
SEEDS = [0, 1]
DIMS = [3072, 512, 256, 10]
PENALTY = 1e-4
DROPOUT = 0.2
LR, MOMENTUM = 0.01, 0.9
BN_EPS, BN_MOMENTUM = 1e-5, 0.1


def grid(limit):
    trials = [
        dict(act=a, init=i, bn=b, reg=r, seed=s)
        for a, i, b, r, s in itertools.product(ACTS, INITS, BNS, REGS, SEEDS)
    ]
    return trials[:limit] if limit else trials


def activation(name):
    return {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu}[name]


def make_model(trial, dropout_module=True):
    """The trial's network as a module; He init (kaiming_normal_, fan_in) when asked."""
    torch.manual_seed(trial["seed"])
    layers = []
    for i in range(len(DIMS) - 1):
        linear = nn.Linear(DIMS[i], DIMS[i + 1])
        if trial["init"] == "he":
            nn.init.kaiming_normal_(linear.weight, nonlinearity="relu")
            nn.init.zeros_(linear.bias)
        layers.append(linear)
        if i < len(DIMS) - 2:
            if trial["bn"]:
                layers.append(nn.BatchNorm1d(DIMS[i + 1]))
            layers.append({"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU}[trial["act"]]())
            if dropout_module and trial["reg"] == "dropout":
                layers.append(nn.Dropout(DROPOUT))
    return nn.Sequential(*layers)


def penalty(trial, weights):
    if trial["reg"] == "l1":
        return PENALTY * sum(w.abs().sum() for w in weights)
    if trial["reg"] == "l2":
        return PENALTY * sum((w * w).sum() for w in weights)
    return None


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def sequential(trials, x, y, args, dev):
    """Each trial alone, one after the other; returns (seconds, per-epoch seconds)."""
    epoch_seconds = [0.0] * args.epochs
    sync(dev)
    started = time.perf_counter()
    for trial in trials:
        model = make_model(trial).to(dev)
        weights = [m.weight for m in model if isinstance(m, nn.Linear)]
        try:  # fused SGD where this PyTorch has it (2.3+ on CUDA), else foreach
            opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM,
                                  fused=dev.type == "cuda")
        except (TypeError, RuntimeError):
            opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, foreach=True)
        gen = torch.Generator(device=dev).manual_seed(1000 + trial["seed"])
        model.train()
        for epoch in range(args.epochs):
            t0 = time.perf_counter()
            perm = torch.randperm(args.n, device=dev, generator=gen)
            for i in range(0, args.n, args.batch):
                idx = perm[i:i + args.batch]
                if trial["bn"] and idx.numel() == 1:
                    continue
                opt.zero_grad(set_to_none=True)
                loss = F.cross_entropy(model(x[idx]), y[idx])
                extra = penalty(trial, weights)
                if extra is not None:
                    loss = loss + extra
                loss.backward()
                opt.step()
            sync(dev)
            epoch_seconds[epoch] += time.perf_counter() - t0
    sync(dev)
    return time.perf_counter() - started, epoch_seconds


def stacked_forward(act, bn):
    """The functional forward of one architecture: params and buffers of one trial (vmap
    adds the trial dimension), its batch, its dropout probability and key."""
    f = activation(act)
    linears = len(DIMS) - 1

    def forward(params, buffers, xb, p_drop, training):
        h = xb
        new_buffers = {}
        for i in range(linears):
            h = h @ params[f"{3 * i if bn else 2 * i}.weight"].T + params[f"{3 * i if bn else 2 * i}.bias"]
            if i == linears - 1:
                break
            if bn:
                j = 3 * i + 1
                mean_key, var_key = f"{j}.running_mean", f"{j}.running_var"
                if training:
                    mean = h.mean(0)
                    var = h.var(0, correction=0)
                    n = h.shape[0]
                    new_buffers[mean_key] = (1 - BN_MOMENTUM) * buffers[mean_key] + BN_MOMENTUM * mean
                    new_buffers[var_key] = (1 - BN_MOMENTUM) * buffers[var_key] + BN_MOMENTUM * var * n / max(n - 1, 1)
                else:
                    mean, var = buffers[mean_key], buffers[var_key]
                h = (h - mean) / torch.sqrt(var + BN_EPS) * params[f"{j}.weight"] + params[f"{j}.bias"]
            h = f(h)
            if training:
                keep = (torch.rand_like(h) >= p_drop).to(h.dtype)
                h = h * keep / (1 - p_drop)
        return h, new_buffers

    return forward


def vmapped(trials, x, y, args, dev):
    """Trials of one architecture at a time, stacked and trained together with vmap."""
    groups = {}
    for trial in trials:
        groups.setdefault((trial["act"], trial["bn"]), []).append(trial)
    epoch_seconds = [0.0] * args.epochs
    sync(dev)
    started = time.perf_counter()
    for (act, bn), members in groups.items():
        models = [make_model(t, dropout_module=False).to(dev) for t in members]
        params, buffers = stack_module_state(models)
        params = {k: v.detach() for k, v in params.items() if not k.endswith("num_batches_tracked")}
        buffers = {k: v for k, v in buffers.items() if not k.endswith("num_batches_tracked")}
        velocity = {k: torch.zeros_like(v) for k, v in params.items()}
        l1 = torch.tensor([PENALTY if t["reg"] == "l1" else 0.0 for t in members], device=dev)
        l2 = torch.tensor([PENALTY if t["reg"] == "l2" else 0.0 for t in members], device=dev)
        p_drop = torch.tensor([DROPOUT if t["reg"] == "dropout" else 0.0 for t in members], device=dev)
        weight_keys = [k for k in params if k.endswith("weight") and params[k].dim() == 3]
        forward = stacked_forward(act, bn)

        def loss_fn(p, b, xb, yb, l1_g, l2_g, p_g):
            logits, new_b = forward(p, b, xb, p_g, True)
            loss = F.cross_entropy(logits, yb)
            for k in weight_keys:
                loss = loss + l1_g * p[k].abs().sum() + l2_g * (p[k] * p[k]).sum()
            return loss, new_b

        step = vmap(grad(loss_fn, has_aux=True), randomness="different")
        gens = [torch.Generator(device=dev).manual_seed(1000 + t["seed"]) for t in members]
        for epoch in range(args.epochs):
            t0 = time.perf_counter()
            perms = torch.stack([torch.randperm(args.n, device=dev, generator=gen) for gen in gens])
            for i in range(0, args.n, args.batch):
                idx = perms[:, i:i + args.batch]
                if bn and idx.shape[1] == 1:
                    continue
                grads, new_buffers = step(params, buffers, x[idx], y[idx], l1, l2, p_drop)
                if bn:
                    buffers.update(new_buffers)
                for k in params:
                    velocity[k].mul_(MOMENTUM).add_(grads[k])
                    params[k].sub_(LR * velocity[k])
            sync(dev)
            epoch_seconds[epoch] += time.perf_counter() - t0
        del models, params, buffers, velocity
    sync(dev)
    return time.perf_counter() - started, epoch_seconds


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--n", type=int, default=45000)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--trials", type=int, default=0, help="only the first N trials of the grid (0: all 96)")
    p.add_argument("--mode", choices=["both", "sequential", "vmap"], default="both")
    p.add_argument("--tf32", action="store_true", help="allow TF32 matrix multiplies")
    args = p.parse_args()
    dev = torch.device(args.device)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = args.tf32
        torch.backends.cudnn.allow_tf32 = args.tf32
        torch.backends.cudnn.benchmark = True
        name = torch.cuda.get_device_name(dev)
    else:
        name = "cpu"
    trials = grid(args.trials)
    gen = torch.Generator().manual_seed(0)
    # CIFAR-shaped u8 images, standardised per channel, resident on the device.
    images = torch.randint(0, 256, (args.n, 3, 32, 32), generator=gen, dtype=torch.uint8).float() / 255
    mean = images.mean(dim=(0, 2, 3), keepdim=True)
    std = images.std(dim=(0, 2, 3), keepdim=True)
    x = ((images - mean) / std).reshape(args.n, 3072).to(dev)
    y = torch.randint(0, 10, (args.n,), generator=gen).to(dev)
    samples = len(trials) * args.n * args.epochs
    print(f"torch {torch.__version__} on {name}: {len(trials)} trials x {args.epochs} epochs x "
          f"{args.n} samples, {DIMS}, batch {args.batch}, SGD lr {LR} momentum {MOMENTUM}, tf32={args.tf32}")
    results = {}
    for mode, fn in [("sequential", sequential), ("vmap", vmapped)]:
        if args.mode not in ("both", mode):
            continue
        seconds, per_epoch = fn(trials, x, y, args, dev)
        results[mode] = seconds
        print(f"{mode:<10} wall {seconds:9.2f} s   {samples / seconds:12.0f} samples/s   "
              f"per epoch (all trials): {', '.join(f'{s:.2f}' for s in per_epoch)} s")
    if len(results) == 2:
        print(f"vmap / sequential speed-up: {results['sequential'] / results['vmap']:.2f}x")


if __name__ == "__main__":
    main()
