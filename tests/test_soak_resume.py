"""Soak test: train in a subprocess, SIGKILL it at random (seeded) moments, resume, again and again; the
final weights must equal, bit for bit, those of a run that was never interrupted."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from tinyconv import checkpoint

EPOCHS = 12
SCRIPT = textwrap.dedent(f"""
    import sys
    import numpy as np
    import tinyconv as tc
    from tinyconv import checkpoint, nn, optim, train
    from tinyconv import functional as F
    from tinyconv.data import ArrayDataset, DataLoader

    out = sys.argv[1]
    tc.manual_seed(0)
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 512)
    x = (np.eye(4, 16)[y] * 3 + rng.standard_normal((512, 16))).astype(np.float32)
    model = nn.Sequential(nn.Linear(16, 256), nn.ReLU(), nn.Dropout(0.2), nn.Linear(256, 256), nn.BatchNorm1d(256),
                          nn.Tanh(), nn.Linear(256, 4))
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    sched = optim.lr_scheduler.CosineAnnealingLR(opt, T_max={EPOCHS})
    loader = DataLoader(ArrayDataset(x, y), batch_size=16, shuffle=True, seed=5)
    test_loader = DataLoader(ArrayDataset(x[:128], y[:128]), batch_size=64)
    history = train.fit(model, loader, test_loader, opt, F.cross_entropy, {EPOCHS}, scheduler=sched,
                        checkpoint_dir=out, resume=True, history_path=out + "/history", progress=False, log=None)
    checkpoint.save(out + "/final.npz", {{"model": model.state_dict(),
                                         "losses": [r["train_loss"] for r in history]}})
""")


def start(script, out):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p), TINYCONV_THREADS="1")
    return subprocess.Popen([sys.executable, str(script), str(out)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def finish(proc):
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err.decode()


@pytest.mark.slow
def test_killed_and_resumed_many_times_ends_bit_exact(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    t0 = time.perf_counter()
    finish(start(script, whole))
    duration = time.perf_counter() - t0                  # kill moments are drawn over one whole run's length

    rng = np.random.default_rng(2026)
    kills, epochs_seen = 0, []
    for attempt in range(25):
        proc = start(script, broken)
        try:
            proc.wait(timeout=rng.uniform(0.05, 1.0) * duration)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
        else:
            assert proc.returncode == 0, proc.stderr.read().decode()
            break
        path = broken / "checkpoint.npz"
        if path.exists():
            epochs_seen.append(checkpoint.load(path)["epoch"])   # always loadable, never half-written
    else:
        finish(start(script, broken))
    if not (broken / "final.npz").exists():
        finish(start(script, broken))
    assert kills >= 5, f"only {kills} kills: the run is too short for the drawn moments"
    assert epochs_seen == sorted(epochs_seen)

    a, b = checkpoint.load(whole / "final.npz"), checkpoint.load(broken / "final.npz")
    assert list(a["model"]) == list(b["model"])
    for k in a["model"]:
        assert np.array_equal(a["model"][k].numpy(), b["model"][k].numpy()), k
    assert a["losses"] == b["losses"]
    assert not [n for n in os.listdir(broken) if n.endswith(".tmp")]   # stale temporaries cleaned up
