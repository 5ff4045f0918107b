"""Fuzz every layer of tinyconv.nn: random constructor arguments (good and bad), shapes and dtypes.

The promise checked: building and calling a layer either gives PyTorch's result (compared where torch is
installed: same arguments, same weights) or raises a ``ValueError``/``TypeError`` whose message names the
layer, never another exception type and never a result PyTorch refuses to give.  Bounded: a few examples
per layer, tiny shapes (the ``ci`` Hypothesis profile of conftest.py; ``HYPOTHESIS_PROFILE=thorough`` for more).
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import tinyconv as tc
from tinyconv import nn

try:
    import torch
except ImportError:  # the promise is still checked without the oracle: a result or a clear error
    torch = None

DTYPES = [np.float32, np.float64, np.int64, np.float16, np.bool_]
size = st.integers(-1, 4)
small = st.integers(0, 3)
maybe_float = lambda s: st.one_of(s, s.map(float), st.sampled_from([0.5, 1.5, True, "2"]))  # noqa: E731
pair_or_int = lambda s: st.one_of(s, st.tuples(s, s))  # noqa: E731


def nchw(c=st.integers(1, 4)):
    return st.tuples(st.integers(1, 2), c, st.integers(1, 6), st.integers(1, 6))


# name -> (strategy of constructor kwargs, strategy of input shapes, mode): "eval" runs the layer in eval mode
SPECS = {
    "Conv2d": (st.fixed_dictionaries({
        "in_channels": maybe_float(size), "out_channels": maybe_float(size), "kernel_size": pair_or_int(small),
        "stride": maybe_float(small), "padding": st.one_of(pair_or_int(st.integers(-1, 2)),
                                                           st.sampled_from(["same", "valid", "full"])),
        "dilation": small, "groups": maybe_float(small), "bias": st.booleans()}), nchw(), "train"),
    "Linear": (st.fixed_dictionaries({"in_features": maybe_float(size), "out_features": maybe_float(size),
                                      "bias": st.booleans()}),
               st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple), "train"),
    "BatchNorm1d": (st.fixed_dictionaries({
        "num_features": maybe_float(size), "eps": st.sampled_from([1e-5, 0.1, 0.0, -1e-3]),
        "momentum": st.sampled_from([0.1, None, 0.0, 1.0, 1.5, -0.1]), "affine": st.booleans(),
        "track_running_stats": st.booleans()}),
        st.tuples(st.integers(2, 3), st.integers(1, 4)), "train"),
    "BatchNorm2d": (st.fixed_dictionaries({
        "num_features": maybe_float(size), "eps": st.sampled_from([1e-5, 0.0]),
        "momentum": st.sampled_from([0.1, None, 1.5]), "affine": st.booleans()}), nchw(), "train"),
    "LayerNorm": (st.fixed_dictionaries({
        "normalized_shape": st.one_of(size, st.tuples(size, size)), "eps": st.sampled_from([1e-5, 0.0]),
        "elementwise_affine": st.booleans()}), st.tuples(st.integers(1, 2), st.integers(1, 4), st.integers(1, 4)),
        "train"),
    "MaxPool2d": (st.fixed_dictionaries({
        "kernel_size": pair_or_int(small), "stride": st.one_of(st.none(), maybe_float(small)),
        "padding": st.integers(-1, 2), "dilation": small, "ceil_mode": st.booleans()}), nchw(), "train"),
    "AvgPool2d": (st.fixed_dictionaries({
        "kernel_size": pair_or_int(small), "stride": st.one_of(st.none(), small), "padding": st.integers(-1, 2),
        "ceil_mode": st.booleans(), "count_include_pad": st.booleans(),
        "divisor_override": st.one_of(st.none(), st.integers(-1, 3))}), nchw(), "train"),
    "AdaptiveAvgPool2d": (st.fixed_dictionaries({"output_size": st.one_of(
        size, st.tuples(st.one_of(st.none(), size), st.one_of(st.none(), size)))}), nchw(), "train"),
    "AdaptiveMaxPool2d": (st.fixed_dictionaries({"output_size": st.one_of(
        size, st.tuples(st.one_of(st.none(), size), st.one_of(st.none(), size)))}), nchw(), "train"),
    "LocalResponseNorm": (st.fixed_dictionaries({
        "size": maybe_float(size), "alpha": st.sampled_from([1e-4, 0.5, float("inf")]),
        "beta": st.sampled_from([0.75, 0.0]), "k": st.sampled_from([1.0, 2.0])}), nchw(), "train"),
    "Dropout": (st.fixed_dictionaries({"p": st.sampled_from([0.0, 0.5, 1.0, -0.1, 1.5, "0.5"])}),
                nchw(), "eval"),
    "Dropout2d": (st.fixed_dictionaries({"p": st.sampled_from([0.0, 0.5, 1.0, 2.0])}), nchw(), "eval"),
    "LeakyReLU": (st.fixed_dictionaries({"negative_slope": st.sampled_from([0.01, -2.0, 0.0, "x"])}),
                  nchw(), "train"),
    "Softplus": (st.fixed_dictionaries({"beta": st.sampled_from([1.0, 2.0, 0.5, 0]),
                                        "threshold": st.sampled_from([20.0, 1.0])}), nchw(), "train"),
    "GELU": (st.fixed_dictionaries({"approximate": st.sampled_from(["none", "tanh", "fast"])}), nchw(), "train"),
    "Softmax": (st.fixed_dictionaries({"dim": st.one_of(st.integers(-5, 4), st.just(1.0))}), nchw(), "train"),
    "LogSoftmax": (st.fixed_dictionaries({"dim": st.integers(-5, 4)}), nchw(), "train"),
    "Flatten": (st.fixed_dictionaries({"start_dim": st.integers(-5, 4), "end_dim": st.integers(-5, 4)}),
                nchw(), "train"),
    "Unflatten": (st.fixed_dictionaries({"dim": st.integers(-3, 2), "unflattened_size": st.sampled_from(
        [(2, 2), (-1, 2), (1, -1), (0, 4), (-1, -1)])}), st.tuples(st.integers(1, 2), st.sampled_from([4, 6])),
        "train"),
    "ZeroPad2d": (st.fixed_dictionaries({"padding": st.one_of(st.integers(-1, 2),
                                                              st.tuples(small, small, small, small))}),
                  nchw(), "train"),
    "ChannelShuffle": (st.fixed_dictionaries({"groups": maybe_float(small)}), nchw(), "train"),
    "ELU": (st.fixed_dictionaries({"alpha": st.sampled_from([1.0, 0.5, 2.0])}), nchw(), "train"),
    "GroupNorm": (st.fixed_dictionaries({
        "num_groups": st.sampled_from([1, 2, 3]), "num_channels": st.sampled_from([2, 3, 4]),
        "eps": st.sampled_from([1e-5, 0.1]), "affine": st.booleans()}), nchw(st.sampled_from([2, 3, 4])), "train"),
    "Upsample": (st.fixed_dictionaries({"scale_factor": st.sampled_from([2, 3, 1.5]),
                                        "mode": st.sampled_from(["nearest", "bilinear"])}), nchw(), "train"),
}
for _name in ("ReLU", "ReLU6", "SiLU", "Hardswish", "Hardsigmoid", "Sigmoid", "Tanh", "Identity"):
    SPECS[_name] = (st.just({}), nchw(), "train")


def test_every_layer_is_fuzzed():
    import inspect
    layers = {n for n, c in vars(nn).items() if inspect.isclass(c) and issubclass(c, nn.Module)}
    skipped = {"Module", "Sequential", "ModuleList", "ModuleDict",            # containers
               "LayerNorm2d", "StochasticDepth", "DropPath",                   # no torch.nn twin
               "CrossEntropyLoss", "NLLLoss", "MSELoss", "MultiMarginLoss", "BCEWithLogitsLoss",  # test_loss.py
               "BCELoss", "L1Loss", "SmoothL1Loss"}  # tests/test_idioms.py
    assert layers - skipped == set(SPECS)


def torch_result(name, kwargs, ours, x, mode):
    """PyTorch's output for the same layer, arguments, weights and input; raises what torch raises."""
    cls = getattr(torch.nn, name)
    layer = cls(**kwargs)
    state = {k: torch.from_numpy(np.array(v.numpy())) for k, v in ours.state_dict().items()}
    layer.load_state_dict(state, strict=True)
    layer.train(mode == "train")
    with torch.no_grad():
        return layer(torch.from_numpy(x)).numpy()


def check(name, kwargs, shape, dtype, mode):
    x = (np.random.default_rng(0).standard_normal(shape) * 2).astype(dtype)
    layer_state = None
    try:
        layer = getattr(nn, name)(**kwargs)
        layer.train(mode == "train")
        layer_state = {k: v.numpy().copy() for k, v in layer.state_dict().items()}
        y = layer(tc.tensor(x)).numpy()
    except (ValueError, TypeError) as e:
        assert name in str(e), f"{name}({kwargs}) on {shape} {np.dtype(dtype)}: the error does not name the layer: {e}"
        return
    except Exception as e:  # pragma: no cover - what the test exists to catch
        pytest.fail(f"{name}({kwargs}) on {shape} {np.dtype(dtype)} raised {type(e).__name__}: {e}")
    if torch is None:
        return
    if name.startswith("BatchNorm"):                # torch sees the statistics the layer started with
        layer.load_state_dict({k: tc.tensor(v) for k, v in layer_state.items()})
    try:
        want = torch_result(name, kwargs, layer, x, mode)
    except Exception as e:
        pytest.fail(f"{name}({kwargs}) on {shape} {np.dtype(dtype)}: tinyconv gave a result of shape {y.shape}, "
                    f"PyTorch refuses ({type(e).__name__}: {e})")
    assert y.shape == want.shape and y.dtype == want.dtype, (name, kwargs, shape, y.shape, want.shape)
    tol = {np.dtype(np.float64): 1e-9, np.dtype(np.float32): 1e-4}.get(y.dtype, 0)
    np.testing.assert_allclose(y, want, rtol=tol, atol=tol, err_msg=f"{name}({kwargs}) on {shape}")


@pytest.mark.parametrize("name", sorted(SPECS))
def test_fuzz_layer(name):
    kwargs_st, shape_st, mode = SPECS[name]

    @settings(max_examples=12, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(kwargs=kwargs_st, shape=shape_st, dtype=st.sampled_from(DTYPES))
    def run(kwargs, shape, dtype):
        check(name, kwargs, shape, dtype, mode)
    run()
