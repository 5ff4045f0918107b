"""Lesson 5: transfer learning, DeCAF on a small scale (lecture 003: features of layers 5, 6, 7 reused).

    python examples/lessons/05_transfer_decaf.py [--quick] [--out DIR] [--source fashion-mnist] [--target mnist]

LeNet-5 is trained on the source data set; its layers are then frozen and their outputs used as features
for a linear classifier (logistic regression, scikit-learn) trained on only a few labelled images per class
of the *other* data set.  The table gives the target's test accuracy per layer, beside raw pixels and an
untrained LeNet of the same shape (random features), like the lecture's DeCAF table.

Fashion-MNIST: ``apt-get install dataset-fashion-mnist`` (or IDX files in ``$TINYCONV_DATA``).  Without it
the lesson says so and exits cleanly.
"""
# %%
import sys
import time

import numpy as np

from _common import (DatasetNotFoundError, accuracy, load_digits, parse_args, saved, train_classifier, write_text,
                     xavier_init)

from tinyconv import viz
from tinyconv.models import lenet5
from tinyconv.viz import _plot


def extra(p):
    p.add_argument("--source", default="fashion-mnist", choices=["mnist", "fashion-mnist"])
    p.add_argument("--target", default="mnist", choices=["mnist", "fashion-mnist"])


args = parse_args(__doc__, extra=extra)
try:
    from sklearn.linear_model import LogisticRegression
except ImportError:
    sys.exit("lesson 5 needs scikit-learn: pip install 'tinyconv[viz]'")
n_source, epochs, n_test = (2000, 2, 1000) if args.quick else (4000, 8, 2000)
shots = (5, 20) if args.quick else (5, 20, 100)
try:
    x_src, y_src, src_desc = load_digits("train", n_source, args.seed, args.source)
    x_tr, y_tr, tgt_desc = load_digits("train", 3000, args.seed, args.target)  # the labelled few come from here
    x_te, y_te, _ = load_digits("test", n_test, args.seed, args.target)
except DatasetNotFoundError as e:
    print(f"lesson 5 skipped: {str(e).splitlines()[0]}\n(apt-get install dataset-fashion-mnist installs it)")
    sys.exit(0)
print(f"source: {src_desc}\ntarget: {tgt_desc}")

# %% The source network.
t0 = time.perf_counter()
net = train_classifier(xavier_init(lenet5()), x_src, y_src, epochs, seed=args.seed)
untrained = xavier_init(lenet5())
print(f"LeNet-5 on {args.source}: {accuracy(net, x_src, y_src):.1%} train accuracy ({time.perf_counter() - t0:.0f} s)")

# %% Features at several depths, a logistic regression on a few labels per class of the target.
LAYERS = [("S2 (6x14x14)", "features.2"), ("S4 (16x5x5)", "features.5"), ("C5 (120)", "features.7"),
          ("F6 (84)", "classifier.2"), ("output (10)", "classifier.3")]
rng = np.random.default_rng(args.seed)
picks = {n: np.concatenate([rng.permutation(np.flatnonzero(y_tr == c))[:n] for c in range(10)]) for n in shots}


def linear_accuracy(train_feats, test_feats, n):
    idx = picks[n]
    mu, sd = train_feats[idx].mean(0), train_feats[idx].std(0) + 1e-6
    clf = LogisticRegression(max_iter=2000, C=1.0)
    clf.fit((train_feats[idx] - mu) / sd, y_tr[idx])
    return float((clf.predict((test_feats - mu) / sd) == y_te).mean())


used = np.unique(np.concatenate(list(picks.values())))
rows = [("pixels", {n: linear_accuracy(x_tr.reshape(len(x_tr), -1), x_te.reshape(len(x_te), -1), n)
                    for n in shots}, None)]
for label, layer in LAYERS:
    accs, rand = {}, {}
    for model, store in ((net, accs), (untrained, rand)):
        part = viz.features(model, layer, x_tr[used])
        f_tr = np.zeros((len(x_tr), part.shape[1]))
        f_tr[used] = part
        f_te = viz.features(model, layer, x_te)
        store.update({n: linear_accuracy(f_tr, f_te, n) for n in shots})
    rows.append((label, accs, rand))

# %% The table, as the lecture's.
head = f"{'features':16s}" + "".join(f"{f'{n}/class':>10s}" for n in shots) + "   untrained LeNet"
lines = [f"{args.source} -> {args.target}: test accuracy of a logistic regression on {len(y_te)} target images",
         head, "-" * len(head)]
for label, accs, rand in rows:
    lines.append(f"{label:16s}" + "".join(f"{accs[n]:10.1%}" for n in shots)
                 + ("   " + " ".join(f"{rand[n]:.1%}" for n in shots) if rand else ""))
print("\n".join(lines))
write_text(f"{args.out}/table.txt", "\n".join(lines) + "\n")

fig = _plot.figure((7, 3.8))
ax = fig.subplots()
names = [r[0] for r in rows]
for j, n in enumerate(shots):
    ax.plot(names, [100 * r[1][n] for r in rows], "o-", label=f"trained on {args.source}, {n}/class")
    ax.plot(names[1:], [100 * r[2][n] for r in rows[1:]], "x--", color=f"C{j}", alpha=0.6,
            label=f"untrained, {n}/class")
ax.set(ylabel=f"{args.target} test accuracy, %", title=f"features of LeNet-5 layers: {args.source} -> {args.target}")
ax.tick_params(axis="x", labelsize=8)
ax.grid(alpha=0.3)
ax.legend(fontsize=7)
saved(_plot.save(fig, f"{args.out}/transfer.png"))
