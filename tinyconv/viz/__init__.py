"""``tinyconv.viz``: look inside a network (lectures 002-003).

- :func:`graph`: the recorded computational graph as DOT text (rendered by Graphviz where installed),
  per Function or collapsed per module (:func:`trace_modules`).
- :func:`plot_filters`, :func:`activations` / :func:`plot_activations`, :func:`top_k` / :func:`plot_top_k`
  (with :func:`receptive_field` patches): what a layer learnt and what excites it.
- :func:`features`, :func:`tsne`, :func:`knn_accuracy`, :func:`plot_embedding`: a layer's feature space.
- :func:`occlusion`, :func:`saliency`, :func:`grad_cam`, :func:`plot_heatmaps`: which pixels decide the label.
- :class:`StatsRecorder`: per-layer weight/gradient/activation statistics during training, plotted.

Plots need matplotlib, t-SNE scikit-learn: ``pip install 'tinyconv[viz]'``.  Every plot function writes
a file atomically and returns its path; nothing touches pyplot's global state.
"""
from .attribution import grad_cam, occlusion, plot_heatmaps, saliency  # noqa: F401
from .dynamics import StatsRecorder  # noqa: F401
from .embedding import features, knn_accuracy, plot_embedding, tsne  # noqa: F401
from .layers import activations, plot_activations, plot_filters, plot_top_k, receptive_field, top_k  # noqa: F401
from .graph import Graph, GraphvizNotFoundWarning, ModuleTrace, graph, trace_modules  # noqa: F401
