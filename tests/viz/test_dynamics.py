"""StatsRecorder: per-layer statistics sampled during fit or a hand-written loop, and only then."""
import numpy as np
import pytest

import tinyconv as tc
from tinyconv import functional as F, nn, optim, viz
from tinyconv.data import ArrayDataset, DataLoader
from tinyconv.train import fit


def tiny():
    tc.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 6 * 6, 4))


def data(n=40):
    rng = np.random.default_rng(0)
    return ArrayDataset(rng.standard_normal((n, 1, 8, 8)).astype(np.float32), rng.integers(0, 4, n))


def test_records_during_fit_every_k_steps(tmp_path):
    model = tiny()
    rec = viz.StatsRecorder(model, every=3)
    loader = DataLoader(data(), batch_size=4, shuffle=True, seed=0)
    test = DataLoader(data(12), batch_size=4)
    with rec:
        fit(model, loader, test, optim.SGD(model.parameters(), lr=0.1), F.cross_entropy, epochs=2,
            progress=False, log=None, on_step_end=rec.on_step_end)
    assert rec.steps == 20
    steps, _ = rec.series("0", "weight")
    assert list(steps) == [0, 3, 6, 9, 12, 15, 18]
    for kind in ("grad", "activation"):
        assert list(rec.series("3", kind)[0]) == list(steps)  # evaluation passes recorded nothing
    assert not model[0]._forward_hooks  # hooks gone after the with block
    last = [r for r in rec.records if r["layer"] == "3" and r["kind"] == "weight"][-1]
    assert last["percentiles"][0] <= last["mean"] <= last["percentiles"][-1]
    assert rec.plot(tmp_path / "d.png")


def test_statistics_are_those_of_the_step():
    model = tiny()
    rec = viz.StatsRecorder(model, every=1)
    opt = optim.SGD(model.parameters(), lr=0.1)
    x = tc.tensor(np.random.default_rng(1).standard_normal((5, 1, 8, 8)).astype(np.float32))
    y = tc.tensor(np.array([0, 1, 2, 3, 0]))
    with rec:
        out = model(x)
        conv_out = model[0](x).numpy()
        F.cross_entropy(out, y).backward()
        grad = model[0].weight.grad.numpy().copy()
        opt.step()
        rec.step()
    acts = [r for r in rec.records if r["kind"] == "activation" and r["layer"] == "0"]
    grads = [r for r in rec.records if r["kind"] == "grad" and r["layer"] == "0"]
    assert len(acts) == 1 and len(grads) == 1  # the extra forward of model[0] ran after the model's
    assert grads[0]["norm"] == pytest.approx(float(np.linalg.norm(grad)), rel=1e-6)
    assert acts[0]["std"] == pytest.approx(float(conv_out.std()), rel=1e-5)
    weights = [r for r in rec.records if r["kind"] == "weight" and r["layer"] == "0"]
    assert weights[0]["mean"] == pytest.approx(float(model[0].weight.numpy().mean()), rel=1e-6)


def test_off_means_no_hooks_and_no_records():
    model = tiny()
    rec = viz.StatsRecorder(model, every=2, activations=False)
    with rec:
        assert not model[0]._forward_hooks
    x = tc.randn(2, 1, 8, 8)
    model(x)
    assert rec.records == []
    with pytest.raises(ValueError, match="nothing recorded"):
        rec.plot("/nonexistent/d.png")
    with pytest.raises(ValueError, match="every"):
        viz.StatsRecorder(model, every=0)
