"""ONNX in and out: ``export(model, example_input, path)`` writes a traced forward pass as an ONNX graph,
``load(path)`` turns an ONNX graph into a tinyconv ``Module`` (differentiable, so it can be fine-tuned).

Both need the ``onnx`` package (``pip install tinyconv[onnx]``); onnxruntime is only used by the tests.
"""
from .export import build_model, export, supported_functions  # noqa: F401
from .importer import OnnxModule, load  # noqa: F401
