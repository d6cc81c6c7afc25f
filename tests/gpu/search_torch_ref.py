#!/usr/bin/env python3
"""search_torch_ref.py: rxgemmd's DARTS search (daemon/search.c) against PyTorch.

The search network is nas_torch_ref.py's (the reference's model_search.py structure, so its
state_dict has the same entries in the same order as rxgemmd's state blob, docs/NAS.md).
Two modes, both on the GPU machine (the device tool), TF32 off:

  search_torch_ref.py --compare DIR
      DIR is what `bench-search --dump DIR` wrote: config.txt, the batches (train_x.f32,
      train_y.i32, valid_x.f32, valid_y.i32) and rxgemmd's states after 0, 1 and 10 steps
      (state0.bin, state1.bin, state10.bin). The state after 0 steps goes into PyTorch
      (weights, BN running statistics, alphas; the optimisers start empty, as in rxgemmd),
      PyTorch runs the reference's first-order step (architecture step on the validation
      batch with Adam, then the weight step on the training batch: gradient clipped at 5,
      SGD with momentum) on the same batches, and after 1 and 10 steps the weights, the
      running statistics and the alphas are compared with rxgemmd's. Exit 1 on
      disagreement.

  search_torch_ref.py --time [--C 16 --layers 8 --batch 64 --size 32 --steps 20]
      The reference step in eager mode (cudnn.benchmark on): forward, backward and update
      medians in ms, both steps of a first-order DARTS step together, the device
      synchronised at each phase's end, as bench-search reports rxgemmd's.

The tolerance. Both sides compute in float32 but sum in different orders (cuDNN's and
cuBLAS's blockings against rxgemmd's kernels), which moves each gradient by a few ulps of
its terms; BN's batch statistics and the loss's softmax carry that through the network. So
what is compared is each state's change from the start (the update, not the state, which
is mostly the initial weights): max |update_ours - update_torch| over max |update_torch|,
per array group (the state_dict, the alphas), at most 1e-3 after one step and 1e-2 after
ten. A wrong gradient, a missed term of the optimiser or a wrong learning rate gives
differences of the order of the update itself. Over ten steps a search can be sensitive
enough that float32 rounding alone takes two runs further apart than that (Adam divides
the alphas' small, noisy gradients by their own size): PyTorch is run a second time from
the same state with every float moved by one rounding error, and a difference within four
times that self-drift is accepted too; both figures are printed.
"""
import argparse
import math
import os
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
try:
    import numpy as np
    import torch
    import torch.nn as nn
    import nas_torch_ref as ref
except ImportError as e:  # the CI machines have no torch
    print("search_torch_ref.py: skipped: %s" % e)
    sys.exit(77)

HEADER = 128


def read_config(path):
    cfg = {}
    for line in open(path):
        line = line.strip()
        if line and not line.startswith("#"):
            k, v = line.split("=", 1)
            cfg[k.strip()] = float(v) if "." in v or "e" in v else int(v)
    return cfg


def read_state(path):
    """A state blob: (header fields, state_dict floats, momentum, alphas, adam m, adam v)."""
    raw = open(path, "rb").read()
    if raw[:8] != b"RXDSRCH\0":
        sys.exit("%s: not a search state" % path)
    version, header = struct.unpack_from("<II", raw, 8)
    dims = struct.unpack_from("<7i", raw, 16)
    steps_done, rng, S, T, A = struct.unpack_from("<QQQQQ", raw, 48)
    f = np.frombuffer(raw, dtype="<f4", offset=header)
    if f.size != S + T + 3 * A:
        sys.exit("%s: %d floats, want %d" % (path, f.size, S + T + 3 * A))
    sd, mom = f[:S], f[S:S + T]
    al, m, v = f[S + T:S + T + A], f[S + T + A:S + T + 2 * A], f[S + T + 2 * A:]
    return dict(dims=dims, steps=steps_done, sd=sd, mom=mom, alphas=al, m=m, v=v)


def build(cfg, dev):
    model = ref.Network("cifar10", cfg["C"], cfg["classes"], cfg["layers"], genotype=None,
                        steps=cfg["steps"], multiplier=cfg["multiplier"]).to(dev)
    return model


def load_state(model, st, dev, cfg):
    ref.load_blob(model, st["sd"].copy())
    edges = cfg["steps"] * (cfg["steps"] + 3) // 2
    a = torch.from_numpy(st["alphas"].copy()).reshape(2, edges, 8).to(dev)
    normal = a[0].clone().requires_grad_(True)
    reduce_ = a[1].clone().requires_grad_(True)
    return normal, reduce_


def make_optimisers(model, alphas, cfg):
    w = torch.optim.SGD(model.parameters(), lr=cfg["lr"], momentum=cfg["momentum"],
                        weight_decay=cfg["weight_decay"])
    a = torch.optim.Adam(alphas, lr=cfg["arch_lr"], betas=(cfg["arch_beta1"], cfg["arch_beta2"]),
                         eps=cfg.get("arch_eps", 1e-8), weight_decay=cfg["arch_weight_decay"])
    return w, a


def lr_at(cfg, step):
    epoch = step // max(1, cfg["steps_per_epoch"])
    return cfg["lr_min"] + (cfg["lr"] - cfg["lr_min"]) * (
        1 + math.cos(math.pi * epoch / cfg["epochs"])) / 2


def one_step(model, alphas, opt_w, opt_a, batch, cfg, step, times=None, sync=None):
    """The reference's first-order step: architect.step on the validation batch, then the
    weight step on the training batch."""
    (xt, yt), (xv, yv) = batch
    crit = nn.CrossEntropyLoss()
    model.train()
    t0 = time.perf_counter()
    opt_a.zero_grad()
    loss_v = crit(model(xv, alphas), yv)
    sync(); t1 = time.perf_counter()
    loss_v.backward()
    sync(); t2 = time.perf_counter()
    opt_a.step()
    sync(); t3 = time.perf_counter()
    for g in opt_w.param_groups:
        g["lr"] = lr_at(cfg, step)
    opt_w.zero_grad()
    loss_t = crit(model(xt, alphas), yt)
    sync(); t4 = time.perf_counter()
    loss_t.backward()
    sync(); t5 = time.perf_counter()
    nn.utils.clip_grad_norm_(model.parameters(), cfg["grad_clip"])
    opt_w.step()
    sync(); t6 = time.perf_counter()
    if times is not None:
        times.append(((t1 - t0) + (t4 - t3), (t2 - t1) + (t5 - t4), (t3 - t2) + (t6 - t5)))
    return float(loss_t.detach()), float(loss_v.detach())


def flat_state(model, alphas):
    sd = np.concatenate([v.detach().float().cpu().numpy().ravel()
                         for _, v in ref.blob_entries(model)])
    al = np.concatenate([a.detach().cpu().numpy().ravel() for a in alphas])
    return sd, al


def rel_update(ours, theirs, start):
    du, dt = ours - start, theirs - start
    scale = np.abs(dt).max()
    return float(np.abs(du - dt).max() / scale) if scale > 0 else float(np.abs(du).max())


def trajectory(cfg, s0, batch, dev, upto, perturb=None):
    """PyTorch's search from state s0 (its floats scaled by 1 + perturb[i] when given):
    the flattened state_dict and alphas after each step in upto."""
    st = dict(s0)
    if perturb is not None:
        st["sd"] = (s0["sd"] * (1 + perturb[0])).astype(np.float32)
        st["alphas"] = (s0["alphas"] * (1 + perturb[1])).astype(np.float32)
    model = build(cfg, dev)
    alphas = load_state(model, st, dev, cfg)
    opt_w, opt_a = make_optimisers(model, alphas, cfg)
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)
    out, step = {}, 0
    for n in upto:
        while step < n:
            one_step(model, alphas, opt_w, opt_a, batch, cfg, step, sync=sync)
            step += 1
        out[n] = flat_state(model, alphas)
    return out


def compare(args):
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = torch.device(args.device)
    d = args.compare
    cfg = read_config(os.path.join(d, "config.txt"))
    b, hw = cfg["batch"], cfg["size"]

    def load(name, dtype, shape):
        return torch.from_numpy(np.fromfile(os.path.join(d, name), dtype=dtype).reshape(shape)).to(dev)
    batch = ((load("train_x.f32", "<f4", (b, 3, hw, hw)), load("train_y.i32", "<i4", (b,)).long()),
             (load("valid_x.f32", "<f4", (b, 3, hw, hw)), load("valid_y.i32", "<i4", (b,)).long()))
    s0 = read_state(os.path.join(d, "state0.bin"))
    tols = {1: 1e-3, 10: 1e-2}
    ref_run = trajectory(cfg, s0, batch, dev, sorted(tols))
    # PyTorch against itself, started from the same state with every float moved by one
    # rounding error (a relative 2^-24, random sign): how far float32 rounding alone takes
    # two runs of this search apart. A trajectory that far from PyTorch's is as close as
    # float32 can say; the fixed tolerances hold where the search is not that sensitive.
    rng = np.random.default_rng(1)
    eps = 2.0 ** -24
    perturb = (eps * rng.choice([-1.0, 1.0], s0["sd"].size),
               eps * rng.choice([-1.0, 1.0], s0["alphas"].size))
    self_run = trajectory(cfg, s0, batch, dev, sorted(tols), perturb)
    ok = True
    for upto, tol in sorted(tols.items()):
        st = read_state(os.path.join(d, "state%d.bin" % upto))
        sd, al = ref_run[upto]
        psd, pal = self_run[upto]
        w_err = rel_update(st["sd"], sd, s0["sd"])
        a_err = rel_update(st["alphas"], al, s0["alphas"])
        w_drift = rel_update(psd, sd, s0["sd"])
        a_drift = rel_update(pal, al, s0["alphas"])
        w_tol, a_tol = max(tol, 4 * w_drift), max(tol, 4 * a_drift)
        print("after %2d steps: weights' update differs by %.2e of its largest (PyTorch from "
              "itself one rounding apart: %.2e; allowed %.1e), alphas' by %.2e (%.2e; %.1e)"
              % (upto, w_err, w_drift, w_tol, a_err, a_drift, a_tol))
        if not (w_err <= w_tol and a_err <= a_tol):
            ok = False
    print("agree" if ok else "DISAGREE")
    return 0 if ok else 1


def timing(args):
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    dev = torch.device(args.device)
    cfg = dict(C=args.C, classes=10, layers=args.layers, steps=4, multiplier=4, lr=0.025,
               lr_min=0.001, momentum=0.9, weight_decay=3e-4, grad_clip=5.0, arch_lr=3e-4,
               arch_beta1=0.5, arch_beta2=0.999, arch_weight_decay=1e-3, epochs=50,
               steps_per_epoch=1000)
    torch.manual_seed(0)
    model = build(cfg, dev)
    alphas = [(1e-3 * torch.randn(14, 8, device=dev)).requires_grad_(True) for _ in range(2)]
    alphas = tuple(alphas)
    opt_w, opt_a = make_optimisers(model, alphas, cfg)
    x = torch.randn(2, args.batch, 3, args.size, args.size, device=dev)
    y = torch.randint(0, 10, (2, args.batch), device=dev)
    batch = ((x[0], y[0]), (x[1], y[1]))
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    times = []
    for i in range(args.warmup + args.steps):
        one_step(model, alphas, opt_w, opt_a, batch, cfg, i, times if i >= args.warmup else None,
                 sync)
    med = lambda k: sorted(t[k] for t in times)[len(times) // 2] * 1e3
    tot = sorted(sum(t) for t in times)[len(times) // 2] * 1e3
    print("pytorch eager, C %d layers %d batch %d %dx%d: forward %.2f ms, backward %.2f ms, "
          "update %.2f ms, step %.2f ms (median of %d)" % (args.C, args.layers, args.batch,
                                                          args.size, args.size, med(0), med(1),
                                                          med(2), tot, len(times)))
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--compare", metavar="DIR")
    p.add_argument("--time", action="store_true")
    p.add_argument("--C", type=int, default=16)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--device", default="cuda")
    args = p.parse_args()
    if args.compare:
        return compare(args)
    if args.time:
        return timing(args)
    p.error("give --compare DIR or --time")


if __name__ == "__main__":
    sys.exit(main())
