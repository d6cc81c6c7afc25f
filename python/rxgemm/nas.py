"""NAS evaluation (docs/NAS.md) from Python: genotypes, weight blobs, the supernet."""

import ctypes

import numpy as np

from . import _capi

_DATASETS = {"cifar10": 0, "cifar": 0, "imagenet": 1}
_GENOTYPE_FIELDS = ("normal", "normal_concat", "reduce", "reduce_concat")


def genotype_text(genotype):
    """The genotype as the daemon reads it: a name ("DARTS_V2") or the reference's printed
    Genotype(...) text is passed as it is; an object with the reference's four fields (its
    namedtuple, or any with those attributes) is printed as the reference prints it."""
    if isinstance(genotype, str):
        return genotype
    if all(hasattr(genotype, f) for f in _GENOTYPE_FIELDS):
        parts = []
        for f in _GENOTYPE_FIELDS:
            v = getattr(genotype, f)
            if f.endswith("concat"):
                parts.append("%s=%r" % (f, [int(i) for i in v]))
            else:
                parts.append("%s=%r" % (f, [(str(op), int(i)) for op, i in v]))
        return "Genotype(%s)" % ", ".join(parts)
    raise TypeError("rxgemm: genotype must be a name, the printed Genotype(...) text, or a "
                    "namedtuple with the fields %s" % ", ".join(_GENOTYPE_FIELDS))


def _to_numpy(v):
    # PyTorch tensors without importing torch: .detach().cpu().numpy().
    if hasattr(v, "detach"):
        v = v.detach().cpu().numpy()
    return np.asarray(v)


def weights_blob(weights):
    """The float32 blob of docs/NAS.md: a flat array as it is, or a state_dict (any mapping
    of names to arrays or PyTorch tensors, in the state_dict's order) flattened entry by
    entry, leaving out num_batches_tracked, auxiliary_head.* and registered alphas."""
    if hasattr(weights, "items") and callable(weights.items):
        chunks = []
        for name, v in weights.items():
            name = str(name)
            last = name.rsplit(".", 1)[-1]
            if last == "num_batches_tracked" or name.startswith("auxiliary_head") or \
                    last in ("alphas_normal", "alphas_reduce"):
                continue
            chunks.append(_to_numpy(v).astype(np.float32, copy=False).ravel())
        return np.ascontiguousarray(np.concatenate(chunks) if chunks else
                                    np.zeros(0, np.float32))
    w = _to_numpy(weights)
    if w.dtype != np.float32:
        raise TypeError("rxgemm: a flat weight blob must be float32, not %s" % w.dtype)
    return np.ascontiguousarray(w.ravel())


def _part(p):
    return {"name": p.name.decode("utf-8", "replace"), "ns": p.ns, "steps": p.steps}


def result_dict(r, logits):
    d = {
        "genotype": r.genotype.decode("utf-8", "replace") if r.genotype else "",
        "params": r.params, "macs": r.macs, "weight_floats": r.weight_floats,
        "peak_device_bytes": r.peak_device_bytes, "activation_bytes": r.activation_bytes,
        "batch": r.batch, "batch_piece": r.batch_piece, "classes": r.classes,
        "steps": r.steps, "latency_median_ns": r.latency_median_ns,
        "latency_p90_ns": r.latency_p90_ns, "latency_mean_ns": r.latency_mean_ns,
        "run_ns": [r.run_ns[i] for i in range(r.n_runs)],
        "by_op": [_part(r.by_op[i]) for i in range(r.n_by_op)],
        "by_cell": [_part(r.by_cell[i]) for i in range(r.n_by_cell)],
        "profiled": bool(r.profiled),
    }
    if r.profiled:
        d["unprofiled_median_ns"] = r.unprofiled_median_ns
    if logits is not None:
        d["logits"] = logits
    return d


def build_args(genotype, dataset, C, layers, classes, height, width, batch, weights,
               input, alphas, steps, multiplier, weight_seed, input_seed, warmup, repeat,
               logits):
    """(NasArgs, the arrays it points to, the logits array or None)."""
    a = _capi.NasArgs()
    keep = []
    if dataset not in _DATASETS:
        raise ValueError("rxgemm: dataset is 'cifar10' or 'imagenet', not %r" % (dataset,))
    a.dataset = _DATASETS[dataset]
    if genotype is not None:
        text = genotype_text(genotype).encode()
        keep.append(text)
        a.genotype = text
    for field, v in (("c", C), ("layers", layers), ("classes", classes), ("height", height),
                     ("width", width), ("steps", steps), ("multiplier", multiplier)):
        if v is not None:
            if int(v) <= 0:
                raise ValueError("rxgemm: %s must be positive, not %r" % (field, v))
            setattr(a, field, int(v))
    a.weight_seed = int(weight_seed)
    a.input_seed = int(input_seed)
    a.warmup = int(warmup)
    a.repeat = int(repeat)
    if weights is not None:
        blob = weights_blob(weights)
        keep.append(blob)
        a.weights = blob.ctypes.data
        a.n_weights = blob.size
    if input is not None:
        x = _to_numpy(input)
        if x.dtype != np.float32:
            raise TypeError("rxgemm: input must be float32, not %s" % x.dtype)
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError("rxgemm: input must be batch x 3 x height x width, not %s"
                             % (x.shape,))
        x = np.ascontiguousarray(x)
        keep.append(x)
        a.input = x.ctypes.data
        if batch is None:
            batch = x.shape[0]
        elif batch != x.shape[0]:
            raise ValueError("rxgemm: batch %d but the input holds %d images"
                             % (batch, x.shape[0]))
        if height is None:
            a.height, a.width = x.shape[2], x.shape[3]
    if batch is not None:
        if int(batch) <= 0:
            raise ValueError("rxgemm: batch must be positive")
        a.batch = int(batch)
    if alphas is not None or genotype is None:
        if alphas is None:
            raise ValueError("rxgemm: the supernet (genotype None) needs alphas")
        if hasattr(alphas, "items"):
            an, ar = alphas["normal"], alphas["reduce"]
        else:
            an, ar = alphas
        if genotype is not None:
            raise ValueError("rxgemm: alphas are for the supernet: pass genotype=None")
        n_steps = int(steps) if steps else 4
        edges = n_steps * (n_steps + 3) // 2
        arrs = []
        for name, v in (("normal", an), ("reduce", ar)):
            v = _to_numpy(v).astype(np.float32)
            if v.shape != (edges, 8):
                raise ValueError("rxgemm: alpha_%s has shape %s; %d steps need (%d, 8)"
                                 % (name, v.shape, n_steps, edges))
            arrs.append(np.ascontiguousarray(v))
        keep += arrs
        a.supernet = 1
        a.alpha_normal, a.alpha_reduce = arrs[0].ctypes.data, arrs[1].ctypes.data
    out = None
    if logits:
        # classes and batch as the daemon will use them: its defaults when not given.
        k = a.classes or (1000 if a.dataset == 1 else 10)
        out = np.empty((a.batch or 1, k), np.float32)
        keep.append(out)
        a.logits = out.ctypes.data
    return a, keep, out
