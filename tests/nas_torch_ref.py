#!/usr/bin/env python3
"""nas_torch_ref.py: the PyTorch reference for rxgemmd's NAS evaluation (docs/NAS.md).

Builds the reference DARTS network (NetworkCIFAR, NetworkImageNet, or the search network)
with the module structure of the reference code, so that its state_dict has the same keys in
the same order, loads rxgemmd's weight blob into it (or makes the blob rxgemmd's seeded init
would make), runs the same input and prints the logits and the latency on the GPU.

    nas_torch_ref.py --genotype DARTS_V2 --C 8 --layers 5 --batch 2 \
        [--weights W.raw | --weight-seed 1] [--input-seed 1] \
        [--compare logits.raw] [--write-blob W.raw] [--from-state-dict model.pt] \
        [--warmup 3 --repeat 20] [--device cuda]

--compare takes the raw float32 logits of `rxgemm nas --logits-out F.npy` (the .npy is read
too) and prints the largest difference. --from-state-dict turns a trained model's state_dict
(torch.save) into rxgemmd's blob: every entry in order, num_batches_tracked and
auxiliary_head.* dropped. Needs torch and numpy; not run by make check (tests/ skip it
without a GPU).
"""
import argparse
import collections
import math
import sys
import time

try:
    import numpy as np
    import torch
    import torch.nn as nn
except ImportError as e:  # the CI machines have neither
    print("nas_torch_ref.py: skipped: %s" % e)
    sys.exit(77)

Genotype = collections.namedtuple("Genotype", "normal normal_concat reduce reduce_concat")

NAMED = {
    "DARTS_V1": Genotype(
        normal=[("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 0), ("sep_conv_3x3", 1),
                ("skip_connect", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 2)],
        normal_concat=[2, 3, 4, 5],
        reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 0),
                ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("avg_pool_3x3", 0)],
        reduce_concat=[2, 3, 4, 5]),
    "DARTS_V2": Genotype(
        normal=[("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
                ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)],
        normal_concat=[2, 3, 4, 5],
        reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
                ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)],
        reduce_concat=[2, 3, 4, 5]),
    "NASNet": Genotype(
        normal=[("sep_conv_5x5", 1), ("sep_conv_3x3", 0), ("sep_conv_5x5", 0), ("sep_conv_3x3", 0),
                ("avg_pool_3x3", 1), ("skip_connect", 0), ("avg_pool_3x3", 0), ("avg_pool_3x3", 0),
                ("sep_conv_3x3", 1), ("skip_connect", 1)],
        normal_concat=[2, 3, 4, 5, 6],
        reduce=[("sep_conv_5x5", 1), ("sep_conv_7x7", 0), ("max_pool_3x3", 1), ("sep_conv_7x7", 0),
                ("avg_pool_3x3", 1), ("sep_conv_5x5", 0), ("skip_connect", 3), ("avg_pool_3x3", 2),
                ("sep_conv_3x3", 2), ("max_pool_3x3", 1)],
        reduce_concat=[4, 5, 6]),
    "AmoebaNet": Genotype(
        normal=[("avg_pool_3x3", 0), ("max_pool_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_5x5", 2),
                ("sep_conv_3x3", 0), ("avg_pool_3x3", 3), ("sep_conv_3x3", 1), ("skip_connect", 1),
                ("skip_connect", 0), ("avg_pool_3x3", 1)],
        normal_concat=[4, 5, 6],
        reduce=[("avg_pool_3x3", 0), ("sep_conv_3x3", 1), ("max_pool_3x3", 0), ("sep_conv_7x7", 2),
                ("sep_conv_7x7", 0), ("avg_pool_3x3", 1), ("max_pool_3x3", 0), ("max_pool_3x3", 1),
                ("conv_7x1_1x7", 0), ("sep_conv_3x3", 5)],
        reduce_concat=[3, 4, 6]),
}
PRIMITIVES = ["none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3",
              "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5"]


# ---- operations (the reference's operations.py structure: the same submodule names) ----

class ReLUConvBN(nn.Module):
    def __init__(self, cin, cout, k, stride, pad, affine=True):
        super().__init__()
        self.op = nn.Sequential(nn.ReLU(inplace=False),
                                nn.Conv2d(cin, cout, k, stride=stride, padding=pad, bias=False),
                                nn.BatchNorm2d(cout, affine=affine))

    def forward(self, x):
        return self.op(x)


class DilConv(nn.Module):
    def __init__(self, cin, cout, k, stride, pad, dil, affine=True):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(cin, cin, k, stride, pad, dilation=dil, groups=cin, bias=False),
            nn.Conv2d(cin, cout, 1, padding=0, bias=False),
            nn.BatchNorm2d(cout, affine=affine))

    def forward(self, x):
        return self.op(x)


class SepConv(nn.Module):
    def __init__(self, cin, cout, k, stride, pad, affine=True):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(cin, cin, k, stride, pad, groups=cin, bias=False),
            nn.Conv2d(cin, cin, 1, padding=0, bias=False),
            nn.BatchNorm2d(cin, affine=affine),
            nn.ReLU(inplace=False),
            nn.Conv2d(cin, cin, k, 1, pad, groups=cin, bias=False),
            nn.Conv2d(cin, cout, 1, padding=0, bias=False),
            nn.BatchNorm2d(cout, affine=affine))

    def forward(self, x):
        return self.op(x)


class Identity(nn.Module):
    def forward(self, x):
        return x


class Zero(nn.Module):
    def __init__(self, stride):
        super().__init__()
        self.stride = stride

    def forward(self, x):
        if self.stride == 1:
            return x.mul(0.)
        return x[:, :, ::self.stride, ::self.stride].mul(0.)


class FactorizedReduce(nn.Module):
    def __init__(self, cin, cout, affine=True):
        super().__init__()
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(cin, cout // 2, 1, stride=2, padding=0, bias=False)
        self.conv_2 = nn.Conv2d(cin, cout // 2, 1, stride=2, padding=0, bias=False)
        self.bn = nn.BatchNorm2d(cout, affine=affine)

    def forward(self, x):
        x = self.relu(x)
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], dim=1))


OPS = {
    "none": lambda C, s, a: Zero(s),
    "avg_pool_3x3": lambda C, s, a: nn.AvgPool2d(3, stride=s, padding=1, count_include_pad=False),
    "max_pool_3x3": lambda C, s, a: nn.MaxPool2d(3, stride=s, padding=1),
    "skip_connect": lambda C, s, a: Identity() if s == 1 else FactorizedReduce(C, C, affine=a),
    "sep_conv_3x3": lambda C, s, a: SepConv(C, C, 3, s, 1, affine=a),
    "sep_conv_5x5": lambda C, s, a: SepConv(C, C, 5, s, 2, affine=a),
    "sep_conv_7x7": lambda C, s, a: SepConv(C, C, 7, s, 3, affine=a),
    "dil_conv_3x3": lambda C, s, a: DilConv(C, C, 3, s, 2, 2, affine=a),
    "dil_conv_5x5": lambda C, s, a: DilConv(C, C, 5, s, 4, 2, affine=a),
    "conv_7x1_1x7": lambda C, s, a: nn.Sequential(
        nn.ReLU(inplace=False),
        nn.Conv2d(C, C, (1, 7), stride=(1, s), padding=(0, 3), bias=False),
        nn.Conv2d(C, C, (7, 1), stride=(s, 1), padding=(3, 0), bias=False),
        nn.BatchNorm2d(C, affine=a)),
}


# ---- networks (model.py and model_search.py structure) ----

class Cell(nn.Module):
    def __init__(self, genotype, C_pp, C_p, C, reduction, reduction_prev):
        super().__init__()
        self.preprocess0 = (FactorizedReduce(C_pp, C) if reduction_prev
                            else ReLUConvBN(C_pp, C, 1, 1, 0))
        self.preprocess1 = ReLUConvBN(C_p, C, 1, 1, 0)
        ops, self._indices = zip(*(genotype.reduce if reduction else genotype.normal))
        self._concat = list(genotype.reduce_concat if reduction else genotype.normal_concat)
        self._steps = len(ops) // 2
        self.multiplier = len(self._concat)
        self._ops = nn.ModuleList()
        for name, index in zip(ops, self._indices):
            self._ops.append(OPS[name](C, 2 if reduction and index < 2 else 1, True))

    def forward(self, s0, s1):
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for i in range(self._steps):
            h1 = self._ops[2 * i](states[self._indices[2 * i]])
            h2 = self._ops[2 * i + 1](states[self._indices[2 * i + 1]])
            states.append(h1 + h2)
        return torch.cat([states[i] for i in self._concat], dim=1)


class MixedOp(nn.Module):
    def __init__(self, C, stride):
        super().__init__()
        self._ops = nn.ModuleList()
        for p in PRIMITIVES:
            op = OPS[p](C, stride, False)
            if "pool" in p:
                op = nn.Sequential(op, nn.BatchNorm2d(C, affine=False))
            self._ops.append(op)

    def forward(self, x, w):
        return sum(wi * op(x) for wi, op in zip(w, self._ops))


class SearchCell(nn.Module):
    def __init__(self, steps, multiplier, C_pp, C_p, C, reduction, reduction_prev):
        super().__init__()
        self.preprocess0 = (FactorizedReduce(C_pp, C, affine=False) if reduction_prev
                            else ReLUConvBN(C_pp, C, 1, 1, 0, affine=False))
        self.preprocess1 = ReLUConvBN(C_p, C, 1, 1, 0, affine=False)
        self._steps, self._multiplier = steps, multiplier
        self._ops = nn.ModuleList()
        for i in range(steps):
            for j in range(2 + i):
                self._ops.append(MixedOp(C, 2 if reduction and j < 2 else 1))

    def forward(self, s0, s1, weights):
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        offset = 0
        for i in range(self._steps):
            s = sum(self._ops[offset + j](h, weights[offset + j]) for j, h in enumerate(states))
            offset += len(states)
            states.append(s)
        return torch.cat(states[-self._multiplier:], dim=1)


class Network(nn.Module):
    """NetworkCIFAR / NetworkImageNet (no auxiliary head) or, with alphas, the search net."""

    def __init__(self, dataset, C, classes, layers, genotype=None, steps=4, multiplier=4):
        super().__init__()
        self.search = genotype is None
        if dataset == "imagenet":
            self.stem0 = nn.Sequential(
                nn.Conv2d(3, C // 2, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(C // 2),
                nn.ReLU(inplace=True),
                nn.Conv2d(C // 2, C, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(C))
            self.stem1 = nn.Sequential(
                nn.ReLU(inplace=True), nn.Conv2d(C, C, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(C))
            C_pp, C_p, C_curr, reduction_prev = C, C, C, True
        else:
            C_curr = 3 * C
            self.stem = nn.Sequential(nn.Conv2d(3, C_curr, 3, padding=1, bias=False),
                                      nn.BatchNorm2d(C_curr))
            C_pp, C_p, C_curr, reduction_prev = C_curr, C_curr, C, False
        self.imagenet = dataset == "imagenet"
        self.cells = nn.ModuleList()
        self.reductions = []
        for i in range(layers):
            reduction = i in [layers // 3, 2 * layers // 3]
            if reduction:
                C_curr *= 2
            if self.search:
                cell = SearchCell(steps, multiplier, C_pp, C_p, C_curr, reduction, reduction_prev)
                mult = multiplier
            else:
                cell = Cell(genotype, C_pp, C_p, C_curr, reduction, reduction_prev)
                mult = cell.multiplier
            self.cells.append(cell)
            self.reductions.append(reduction)
            reduction_prev = reduction
            C_pp, C_p = C_p, mult * C_curr
        self.global_pooling = nn.AdaptiveAvgPool2d(1)  # = AvgPool2d(7) on ImageNet's 7x7
        self.classifier = nn.Linear(C_p, classes)

    def forward(self, x, alphas=None):
        if self.imagenet:
            s0 = self.stem0(x)
            s1 = self.stem1(s0)
        else:
            s0 = s1 = self.stem(x)
        for cell, red in zip(self.cells, self.reductions):
            if self.search:
                w = torch.softmax(alphas[1] if red else alphas[0], dim=-1)
                s0, s1 = s1, cell(s0, s1, w)
            else:
                s0, s1 = s1, cell(s0, s1)
        return self.classifier(self.global_pooling(s1).flatten(1))


# ---- rxgemmd's blob and seeded init (docs/NAS.md) ----

def blob_entries(model):
    """The state_dict entries rxgemmd's blob holds, in order."""
    return [(k, v) for k, v in model.state_dict().items()
            if not k.endswith("num_batches_tracked") and not k.startswith("auxiliary_head")]


def load_blob(model, blob):
    off = 0
    sd = model.state_dict()
    for k, v in blob_entries(model):
        n = v.numel()
        if off + n > blob.size:
            sys.exit("the blob has %d floats; the network needs more" % blob.size)
        sd[k].copy_(torch.from_numpy(blob[off:off + n].reshape(v.shape)))
        off += n
    if off != blob.size:
        sys.exit("the blob has %d floats; the network needs %d" % (blob.size, off))


def splitmix_uniform(state, n, lo, hi):
    """n floats as rxgemmd's uniform(): splitmix64 from state; returns (values, state)."""
    M = (1 << 64) - 1
    golden = 0x9e3779b97f4a7c15
    idx = np.arange(1, n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = np.uint64(state) + idx * np.uint64(golden)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xbf58476d1ce4e5b9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94d049bb133111eb)
        z = z ^ (z >> np.uint64(31))
    u = (z >> np.uint64(40)).astype(np.float32) * np.float32(1.0 / 16777216.0)
    lo, hi = np.float32(lo), np.float32(hi)
    return (lo + (hi - lo) * u).astype(np.float32), (state + n * golden) & M


def seeded_blob(model, seed):
    out, state = [], seed
    for k, v in blob_entries(model):
        n = v.numel()
        if k.endswith("running_mean") or (k.endswith(".bias") and v.dim() == 1 and
                                          not k.startswith("classifier")):
            lo, hi = -0.2, 0.2
        elif k.endswith("running_var"):
            lo, hi = 0.5, 2.0
        elif k.startswith("classifier"):
            b = np.float32(1.0) / np.sqrt(np.float32(model.classifier.in_features))
            lo, hi = -b, b
        elif v.dim() == 4:
            fan_in = v.shape[1] * v.shape[2] * v.shape[3]
            b = np.sqrt(np.float32(6.0) / np.float32(fan_in))
            lo, hi = -b, b
        else:  # BN weight (gamma)
            lo, hi = 0.5, 1.5
        vals, state = splitmix_uniform(state, n, lo, hi)
        out.append(vals)
    return np.concatenate(out)


def parse_genotype(text):
    if text in NAMED:
        return NAMED[text]
    # The printed form is a Python expression over Genotype and range.
    return eval(text, {"__builtins__": {}}, {"Genotype": Genotype, "range": range})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--genotype", default="DARTS_V2")
    ap.add_argument("--dataset", default="cifar10", choices=["cifar10", "imagenet"])
    ap.add_argument("--C", type=int)
    ap.add_argument("--layers", type=int)
    ap.add_argument("--classes", type=int)
    ap.add_argument("--size", type=int)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--weights")
    ap.add_argument("--weight-seed", type=int, default=1)
    ap.add_argument("--input-seed", type=int, default=1)
    ap.add_argument("--supernet-alphas", help="raw float32: alpha_normal then alpha_reduce")
    ap.add_argument("--compare")
    ap.add_argument("--write-blob")
    ap.add_argument("--from-state-dict")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--cudnn-benchmark", action="store_true",
                    help="let cuDNN pick its fastest algorithms (what a tuned user runs)")
    ap.add_argument("--cuda-graph", action="store_true",
                    help="time replays of the forward pass captured as one CUDA graph")
    a = ap.parse_args()
    torch.backends.cudnn.benchmark = a.cudnn_benchmark
    # A float32 reference: no TF32 in cuDNN's convolutions or cuBLAS's products.
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    inet = a.dataset == "imagenet"
    C = a.C or (48 if inet else 36)
    layers = a.layers or (14 if inet else 20)
    classes = a.classes or (1000 if inet else 10)
    size = a.size or (224 if inet else 32)
    alphas = None
    if a.supernet_alphas:
        al = np.fromfile(a.supernet_alphas, dtype=np.float32).reshape(2, -1, 8)
        alphas = torch.from_numpy(al)
        model = Network(a.dataset, C, classes, layers, None)
    else:
        model = Network(a.dataset, C, classes, layers, parse_genotype(a.genotype))
    model.eval()
    if a.from_state_dict:
        sd = torch.load(a.from_state_dict, map_location="cpu")
        blob = np.concatenate([v.detach().float().numpy().ravel() for k, v in sd.items()
                               if not k.endswith("num_batches_tracked")
                               and not k.startswith("auxiliary_head")
                               and not k.startswith("alphas_")])
    elif a.weights:
        blob = np.fromfile(a.weights, dtype=np.float32)
    else:
        blob = seeded_blob(model, a.weight_seed)
    load_blob(model, blob)
    if a.write_blob:
        blob.astype(np.float32).tofile(a.write_blob)
    params = sum(v.numel() for k, v in model.named_parameters())
    x, _ = splitmix_uniform(a.input_seed, a.batch * 3 * size * size, -1.0, 1.0)
    x = torch.from_numpy(x.reshape(a.batch, 3, size, size))
    dev = torch.device(a.device if torch.cuda.is_available() or a.device == "cpu" else "cpu")
    model, x = model.to(dev), x.to(dev)
    if alphas is not None:
        alphas = alphas.to(dev)
    times = []
    run = lambda: model(x, alphas)
    graph = None
    if a.cuda_graph and dev.type == "cuda":
        # Warm up on a side stream (as capture requires), then capture one forward pass:
        # a replay launches every kernel of it at once, with no Python in between.
        with torch.no_grad():
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):
                    model(x, alphas)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_logits = model(x, alphas)

        def run():
            graph.replay()
            return static_logits
    with torch.no_grad():
        for r in range(a.warmup + a.repeat):
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            logits = run()
            if dev.type == "cuda":
                torch.cuda.synchronize()
            if r >= a.warmup:
                times.append(time.perf_counter() - t0)
    times.sort()
    logits = logits.float().cpu().numpy()
    print("params %d (%.3f M), blob %d floats" % (params, params / 1e6, blob.size))
    print("latency median %.3f ms, p90 %.3f ms over %d runs on %s (%s%s)" % (
        1e3 * times[(len(times) - 1) // 2], 1e3 * times[math.ceil(0.9 * len(times)) - 1],
        len(times), dev, "CUDA graph" if graph is not None else "eager",
        ", cudnn.benchmark" if a.cudnn_benchmark else ""))
    np.set_printoptions(precision=5, suppress=True)
    print("logits:\n", logits)
    if a.compare:
        if a.compare.endswith(".npy"):
            other = np.load(a.compare).astype(np.float32).ravel()
        else:
            other = np.fromfile(a.compare, dtype=np.float32)
        diff = np.abs(other - logits.ravel()).max()
        scale = np.abs(logits).max()
        print("largest difference from %s: %g (largest logit %g)" % (a.compare, diff, scale))
        return 0 if diff <= 1e-3 * scale + 1e-5 else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
