"""Client.nas_eval against the CLI's result for the same job (rxgemm nas), genotypes by
name, text and namedtuple, weights flat and as a state_dict, and the supernet."""
import collections
import json
import subprocess

import numpy as np
import pytest

import rxgemm

Genotype = collections.namedtuple("Genotype", "normal normal_concat reduce reduce_concat")
SMALL = dict(C=8, layers=5, weight_seed=3, input_seed=4)


def cli_nas(cli, tmp_path, *extra):
    logits = tmp_path / "logits.npy"
    out = subprocess.run(cli + ["nas", "--C", "8", "--layers", "5", "--weight-seed", "3",
                                "--input-seed", "4", "--warmup", "0", "--repeat", "1",
                                "--json", "--logits-out", str(logits)] + list(extra),
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out), np.load(logits)


def test_named_genotype_equals_cli(client, cli, tmp_path):
    r = client.nas_eval("DARTS_V2", batch=2, breakdown=True, **SMALL)
    want, want_logits = cli_nas(cli, tmp_path, "--genotype", "DARTS_V2", "--batch", "2",
                                "--breakdown")
    for k in ("genotype", "params", "macs", "weight_floats", "steps", "batch",
              "peak_device_bytes", "activation_bytes"):
        assert r[k] == want[k], k
    assert r["logits"].shape == (2, 10) and r["logits"].dtype == np.float32
    np.testing.assert_allclose(r["logits"], want_logits, rtol=1e-4, atol=1e-5)
    assert {p["name"] for p in r["by_op"]} == {p["name"] for p in want["by_op"]}
    assert r["profiled"] == want["profiled"] and r["profiled"] == bool(r["by_op"])
    # The per-cell breakdown: the same parts in the same order, each with its plan steps.
    assert [(p["name"], p["steps"]) for p in r["by_cell"]] == \
        [(p["name"], p["steps"]) for p in want["by_cell"]]
    assert r["by_cell"][0]["name"] == "stem" and r["by_cell"][-1]["name"] == "head"
    assert len(r["run_ns"]) == 1 and r["latency_mean_ns"] > 0


def test_genotype_text_and_namedtuple(client):
    by_name = client.nas_eval("DARTS_V1", **SMALL)
    text = by_name["genotype"]
    assert text.startswith("Genotype(")
    by_text = client.nas_eval(text, **SMALL)
    g = eval(text, {"Genotype": Genotype, "range": range})  # the reference's printed form
    by_tuple = client.nas_eval(g, **SMALL)
    for r in (by_text, by_tuple):
        assert r["genotype"] == text and r["params"] == by_name["params"]
        np.testing.assert_array_equal(r["logits"], by_name["logits"])
    with pytest.raises(TypeError):
        client.nas_eval(42, **SMALL)
    with pytest.raises(rxgemm.InvalidArgumentError, match="byte"):
        client.nas_eval("Genotype(normal=[('no_such_op', 0)])", **SMALL)


def test_weights_flat_and_state_dict(client, cli, tmp_path):
    n = client.nas_eval("DARTS_V2", **SMALL, logits=False)["weight_floats"]
    rng = np.random.default_rng(5)
    # All positive: valid for every entry (a BN's running_var must be).
    blob = rng.uniform(0.02, 0.12, n).astype(np.float32)
    flat = client.nas_eval("DARTS_V2", weights=blob, **SMALL)
    # The same blob cut into entries of a state_dict, with the entries the doc says to
    # leave out mixed in.
    sd = collections.OrderedDict()
    sd["alphas_normal"] = np.ones((14, 8), np.float32)
    cuts = [0, 7, 100, 1000, n // 2, n]
    for i in range(len(cuts) - 1):
        sd["part%d.weight" % i] = blob[cuts[i]:cuts[i + 1]].reshape(-1, 1)
        sd["part%d.num_batches_tracked" % i] = np.array(9, np.int64)
    sd["auxiliary_head.classifier.weight"] = np.ones((10, 4), np.float32)
    from_sd = client.nas_eval("DARTS_V2", weights=sd, **SMALL)
    np.testing.assert_array_equal(from_sd["logits"], flat["logits"])

    # A PyTorch state_dict holds tensors: converted as torch.Tensor converts itself
    # (.detach().cpu().numpy()), so without importing torch. This stands in for one.
    class TorchLike:
        def __init__(self, a):
            self.a = a

        def detach(self):
            return self

        def cpu(self):
            return self

        def numpy(self):
            return self.a
    torch_sd = collections.OrderedDict((k, TorchLike(v)) for k, v in sd.items())
    from_torch = client.nas_eval("DARTS_V2", weights=torch_sd, **SMALL)
    np.testing.assert_array_equal(from_torch["logits"], flat["logits"])
    raw = tmp_path / "w.raw"
    blob.tofile(raw)
    _, want_logits = cli_nas(cli, tmp_path, "--genotype", "DARTS_V2", "--weights", str(raw))
    np.testing.assert_allclose(flat["logits"], want_logits, rtol=1e-4, atol=1e-5)
    seeded = client.nas_eval("DARTS_V2", **SMALL)
    assert not np.array_equal(seeded["logits"], flat["logits"])
    with pytest.raises(rxgemm.Error, match=str(n)):
        client.nas_eval("DARTS_V2", weights=blob[:-1], **SMALL)


def test_input(client):
    x = np.random.default_rng(6).uniform(-1, 1, (3, 3, 32, 32)).astype(np.float32)
    r = client.nas_eval("DARTS_V2", input=x, **SMALL)
    assert r["batch"] == 3 and r["logits"].shape == (3, 10)
    one = client.nas_eval("DARTS_V2", input=x[1:2], **SMALL)
    np.testing.assert_allclose(one["logits"][0], r["logits"][1], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError):
        client.nas_eval("DARTS_V2", input=x[:, :2], **SMALL)


def test_supernet(client):
    zeros = np.zeros((14, 8), np.float32)
    r = client.nas_eval(None, alphas=(zeros, zeros), **SMALL)
    assert r["genotype"] == "" and r["logits"].shape == (1, 10)
    assert np.isfinite(r["logits"]).all()
    skewed = zeros.copy()
    skewed[:, 3] = 5.0      # skip_connect dominates every edge
    r2 = client.nas_eval(None, alphas={"normal": skewed, "reduce": zeros}, **SMALL)
    assert r2["params"] == r["params"]
    assert not np.allclose(r2["logits"], r["logits"])
    with pytest.raises(ValueError, match="14, 8"):
        client.nas_eval(None, alphas=(zeros[:10], zeros), **SMALL)
    with pytest.raises(ValueError, match="alphas"):
        client.nas_eval(None, **SMALL)
