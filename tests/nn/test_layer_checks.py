"""Every layer of tinyconv.nn: constructor arguments checked with errors naming the layer and the value, and
one dtype policy (floating-point input only; layers with parameters compute in their parameters' dtype)."""
import inspect

import numpy as np
import pytest

import tinyconv as tc
from tinyconv import nn

# layer factory, input shape, kind: "params" (computes in its parameters' dtype), "float" (any float dtype),
# "any" (moves values around: any dtype, as in PyTorch)
LAYERS = {
    "Conv2d": (lambda: nn.Conv2d(3, 4, 3, padding=1), (2, 3, 5, 5), "params"),
    "Linear": (lambda: nn.Linear(5, 3), (2, 5), "params"),
    "BatchNorm1d": (lambda: nn.BatchNorm1d(3), (4, 3), "params"),
    "BatchNorm2d": (lambda: nn.BatchNorm2d(3), (2, 3, 4, 4), "params"),
    "LayerNorm": (lambda: nn.LayerNorm(4), (2, 3, 4), "params"),
    "LayerNorm2d": (lambda: nn.LayerNorm2d(3), (2, 3, 4, 4), "params"),
    "MaxPool2d": (lambda: nn.MaxPool2d(2), (2, 3, 4, 4), "float"),
    "AvgPool2d": (lambda: nn.AvgPool2d(2), (2, 3, 4, 4), "float"),
    "AdaptiveAvgPool2d": (lambda: nn.AdaptiveAvgPool2d(2), (2, 3, 5, 5), "float"),
    "AdaptiveMaxPool2d": (lambda: nn.AdaptiveMaxPool2d(2), (2, 3, 5, 5), "float"),
    "LocalResponseNorm": (lambda: nn.LocalResponseNorm(3), (2, 4, 3, 3), "float"),
    "Dropout": (lambda: nn.Dropout(0.5), (2, 3), "float"),
    "Dropout2d": (lambda: nn.Dropout2d(0.5), (2, 3, 4, 4), "float"),
    "StochasticDepth": (lambda: nn.StochasticDepth(0.5), (2, 3, 4, 4), "float"),
    "DropPath": (lambda: nn.DropPath(0.5), (2, 3, 4, 4), "float"),
    "ReLU": (lambda: nn.ReLU(), (2, 3), "float"),
    "ReLU6": (lambda: nn.ReLU6(), (2, 3), "float"),
    "LeakyReLU": (lambda: nn.LeakyReLU(0.1), (2, 3), "float"),
    "SiLU": (lambda: nn.SiLU(), (2, 3), "float"),
    "Hardswish": (lambda: nn.Hardswish(), (2, 3), "float"),
    "Hardsigmoid": (lambda: nn.Hardsigmoid(), (2, 3), "float"),
    "Sigmoid": (lambda: nn.Sigmoid(), (2, 3), "float"),
    "Tanh": (lambda: nn.Tanh(), (2, 3), "float"),
    "GELU": (lambda: nn.GELU(), (2, 3), "float"),
    "Softplus": (lambda: nn.Softplus(), (2, 3), "float"),
    "Softmax": (lambda: nn.Softmax(dim=1), (2, 3), "float"),
    "LogSoftmax": (lambda: nn.LogSoftmax(dim=1), (2, 3), "float"),
    "Identity": (lambda: nn.Identity(), (2, 3), "any"),
    "Flatten": (lambda: nn.Flatten(), (2, 3, 2), "any"),
    "Unflatten": (lambda: nn.Unflatten(1, (2, 3)), (2, 6), "any"),
    "ZeroPad2d": (lambda: nn.ZeroPad2d(1), (2, 3, 2, 2), "any"),
    "ChannelShuffle": (lambda: nn.ChannelShuffle(2), (2, 4, 2, 2), "any"),
    "ELU": (lambda: nn.ELU(), (2, 3), "float"),
    "GroupNorm": (lambda: nn.GroupNorm(2, 4), (2, 4, 3, 3), "params"),
    "Upsample": (lambda: nn.Upsample(scale_factor=2), (2, 3, 2, 2), "float"),
}
LOSSES = {  # input shape, target
    "CrossEntropyLoss": ((4, 3), np.array([0, 1, 2, 1])),
    "NLLLoss": ((4, 3), np.array([0, 1, 2, 1])),
    "MultiMarginLoss": ((4, 3), np.array([0, 1, 2, 1])),
    "MSELoss": ((4, 3), np.zeros((4, 3), np.float32)),
    "BCEWithLogitsLoss": ((4, 3), np.zeros((4, 3), np.float32)),
    "BCELoss": ((4, 3), np.zeros((4, 3), np.float32)),
    "L1Loss": ((4, 3), np.zeros((4, 3), np.float32)),
    "SmoothL1Loss": ((4, 3), np.zeros((4, 3), np.float32)),
}
CONTAINERS = {"Module", "Sequential", "ModuleList", "ModuleDict"}


def test_every_layer_of_tinyconv_nn_is_covered():
    layers = {name for name, obj in vars(nn).items() if inspect.isclass(obj) and issubclass(obj, nn.Module)}
    assert layers - CONTAINERS == set(LAYERS) | set(LOSSES)


def sample(shape, dtype):
    x = np.random.default_rng(0).standard_normal(shape) * 3
    return tc.tensor(x.astype(dtype))


@pytest.mark.parametrize("name", sorted(LAYERS))
@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.bool_])
def test_integer_and_bool_input_is_refused_naming_the_layer(name, dtype):
    make, shape, kind = LAYERS[name]
    layer = make()
    x = sample(shape, dtype)
    if kind == "any":
        assert layer(x).dtype == dtype                       # moving values around: any dtype, as PyTorch
        return
    state = {k: v.data.copy() for k, v in layer.state_dict().items()}
    with pytest.raises(TypeError, match=rf"^{name}\b.*(floating-point input|expected input of dtype float32).*"
                                        rf"got (dtype )?{np.dtype(dtype)}"):
        layer(x)
    for k, v in layer.state_dict().items():                 # BatchNorm's running statistics untouched
        assert np.array_equal(v.data, state[k]), k


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_float_dtypes(name):
    make, shape, kind = LAYERS[name]
    layer = make()
    if kind == "params":
        for other in (np.float64, np.float16):               # no silent promotion or cast
            with pytest.raises(TypeError, match=rf"^{name}\b.*expected input of dtype float32 .*got "
                                                rf"{np.dtype(other)}"):
                layer(sample(shape, other))
        layer.double()
    y = layer(sample(shape, np.float64))
    assert y.dtype == np.float64                             # computed in the parameters' (= input's) dtype
    assert layer(sample(shape, np.float32)).dtype == np.float32 if kind != "params" else True


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_losses_refuse_integer_input(name):
    shape, target = LOSSES[name]
    loss = getattr(nn, name)()
    x = sample(shape, np.float32)
    assert np.isfinite(float(loss(x.sigmoid() if name == "BCELoss" else x, tc.tensor(target)).item()))
    with pytest.raises(TypeError, match=rf"^{name}\b.*floating-point input, got dtype int64"):
        loss(sample(shape, np.int64), tc.tensor(target))


def test_layers_refuse_non_floating_parameter_dtypes():
    for make in (lambda: nn.Conv2d(3, 4, 3, dtype=np.int64), lambda: nn.Linear(2, 3, dtype=np.int32),
                 lambda: nn.BatchNorm2d(3, dtype=np.int64), lambda: nn.LayerNorm(3, dtype=np.int16)):
        with pytest.raises(TypeError, match="dtype must be a floating-point type"):
            make()


# constructor, exception, message (a regex: the layer, the argument and the value)
BAD_ARGUMENTS = [
    (lambda: nn.Conv2d(0, 8, 3), ValueError, r"^Conv2d\(0, 8, kernel_size=3\): in_channels must be positive, got "
                                             r"in_channels=0"),
    (lambda: nn.Conv2d(3, -1, 3), ValueError, r"^Conv2d\(3, -1, .*out_channels must be positive, got out_channels=-1"),
    (lambda: nn.Conv2d(3, 8, 3, stride=1.9), TypeError, r"^Conv2d\(3, 8, .*stride must be an integer .*got 1.9"),
    (lambda: nn.Conv2d(3, 8, 3, stride=0.5), TypeError, r"^Conv2d.*stride .*got 0.5"),
    (lambda: nn.Conv2d(3, 8, 3, stride=0), ValueError, r"^Conv2d.*stride must be positive, got stride=0"),
    (lambda: nn.Conv2d(3, 8, 0), ValueError, r"^Conv2d.*kernel_size must be positive, got kernel_size=0"),
    (lambda: nn.Conv2d(3, 8, (3, 2.0)), TypeError, r"^Conv2d.*kernel_size must be an integer"),
    (lambda: nn.Conv2d(3, 8, 3, padding=-1), ValueError, r"^Conv2d.*padding must be >= 0, got padding=-1"),
    (lambda: nn.Conv2d(3, 8, 3, padding=1.5), TypeError, r"^Conv2d.*padding .*got 1.5"),
    (lambda: nn.Conv2d(3, 8, 3, padding="full"), ValueError, r"^Conv2d.*padding must be one of 'same', 'valid'"),
    (lambda: nn.Conv2d(3, 8, 3, dilation=0), ValueError, r"^Conv2d.*dilation must be positive"),
    (lambda: nn.Conv2d(4, 6, 3, groups=4), ValueError, r"^Conv2d\(4, 6, .*groups=4 must divide"),
    (lambda: nn.Conv2d(4, 8, 3, groups=0), ValueError, r"^Conv2d.*groups must be positive, got groups=0"),
    (lambda: nn.Conv2d(4, 8, 3, groups=2.0), TypeError, r"^Conv2d.*groups must be an integer"),
    (lambda: nn.Conv2d(3.0, 8, 3), TypeError, r"^Conv2d.*in_channels must be an integer, got 3.0"),
    (lambda: nn.Conv2d(True, 8, 3), TypeError, r"^Conv2d.*in_channels must be an integer, got True"),
    (lambda: nn.Linear(0, 3), ValueError, r"^Linear\(in_features=0, .*in_features must be positive"),
    (lambda: nn.Linear(3, 2.5), TypeError, r"^Linear.*out_features must be an integer, got 2.5"),
    (lambda: nn.BatchNorm2d(0), ValueError, r"^BatchNorm2d\(0\): num_features must be positive"),
    (lambda: nn.BatchNorm2d(3, eps=0), ValueError, r"^BatchNorm2d\(3\): eps must be a finite number > 0, got eps=0"),
    (lambda: nn.BatchNorm1d(3, eps=-1e-5), ValueError, r"^BatchNorm1d\(3\): eps must be"),
    (lambda: nn.BatchNorm2d(3, momentum=1.5), ValueError, r"^BatchNorm2d\(3\): momentum must be .*between 0 and 1"),
    (lambda: nn.BatchNorm2d(3, momentum=float("nan")), ValueError, r"^BatchNorm2d\(3\): momentum"),
    (lambda: nn.BatchNorm2d(3, momentum="0.1"), TypeError, r"^BatchNorm2d\(3\): momentum must be a real number"),
    (lambda: nn.LayerNorm(0), ValueError, r"^LayerNorm\(0\): normalized_shape must be positive"),
    (lambda: nn.LayerNorm((3, 2.0)), TypeError, r"^LayerNorm.*normalized_shape must be an integer"),
    (lambda: nn.LayerNorm(3, eps=0.0), ValueError, r"^LayerNorm\(3\): eps"),
    (lambda: nn.Dropout(1.5), ValueError, r"^Dropout\(p=1.5\): p must be a finite number between 0 and 1"),
    (lambda: nn.Dropout(-0.1), ValueError, r"between 0 and 1"),
    (lambda: nn.Dropout2d("0.5"), TypeError, r"^Dropout2d\(p='0.5'\): p must be a real number"),
    (lambda: nn.StochasticDepth(2.0), ValueError, r"^StochasticDepth\(p=2.0\): p"),
    (lambda: nn.MaxPool2d(0), ValueError, r"^MaxPool2d\(kernel_size=0\): kernel_size must be positive"),
    (lambda: nn.MaxPool2d(2, stride=1.5), TypeError, r"^MaxPool2d.*stride"),
    (lambda: nn.MaxPool2d(3, padding=2), ValueError, r"^MaxPool2d.*padding should be at most half"),
    (lambda: nn.MaxPool2d(3, dilation=0), ValueError, r"^MaxPool2d.*dilation must be positive"),
    (lambda: nn.AvgPool2d(2, padding=-1), ValueError, r"^AvgPool2d.*padding must be >= 0"),
    (lambda: nn.AvgPool2d(2, divisor_override=0), ValueError, r"^AvgPool2d.*divisor_override must not be zero"),
    (lambda: nn.AdaptiveAvgPool2d(0), ValueError, r"^AdaptiveAvgPool2d\(0\): output_size must be positive"),
    (lambda: nn.AdaptiveMaxPool2d((2, 1.5)), TypeError, r"^AdaptiveMaxPool2d.*output_size must be an integer"),
    (lambda: nn.LocalResponseNorm(0), ValueError, r"^LocalResponseNorm\(0\): size must be positive"),
    (lambda: nn.LocalResponseNorm(2.5), TypeError, r"^LocalResponseNorm\(2.5\): size must be an integer"),
    (lambda: nn.LocalResponseNorm(3, alpha=float("inf")), ValueError, r"^LocalResponseNorm\(3\): alpha"),
    (lambda: nn.LeakyReLU("0.1"), TypeError, r"^LeakyReLU\('0.1'\): negative_slope must be a real number"),
    (lambda: nn.Softplus(beta=0), ValueError, r"^Softplus\(beta=0, .*beta must not be zero"),
    (lambda: nn.Softmax(dim=1.0), TypeError, r"^Softmax\(dim=1.0\): dim must be an integer"),
    (lambda: nn.GELU("fast"), ValueError, r"^GELU: approximate"),
    (lambda: nn.Flatten(1.0), TypeError, r"^Flatten.*start_dim must be an integer"),
    (lambda: nn.Unflatten(1, (2, 0)), ValueError, r"^Unflatten.*sizes must be positive"),
    (lambda: nn.Unflatten(1, (-1, -1)), ValueError, r"^Unflatten.*at most one -1"),
    (lambda: nn.ZeroPad2d(1.5), TypeError, r"^ZeroPad2d\(1.5\): padding must be an integer"),
    (lambda: nn.ZeroPad2d((1, 2)), ValueError, r"^ZeroPad2d.*4-tuple"),
    (lambda: nn.ChannelShuffle(0), ValueError, r"^ChannelShuffle\(0\): groups must be positive"),
    (lambda: nn.CrossEntropyLoss(label_smoothing=1.5), ValueError, r"^CrossEntropyLoss: label_smoothing"),
    (lambda: nn.CrossEntropyLoss(ignore_index=1.0), TypeError, r"^CrossEntropyLoss: ignore_index must be an "),
    (lambda: nn.NLLLoss(reduction="avg"), ValueError, r"^NLLLoss: reduction must be one of 'none', 'mean', 'sum'"),
    (lambda: nn.MSELoss(reduction=None), ValueError, r"^MSELoss: reduction"),
    (lambda: nn.MultiMarginLoss(margin="1"), TypeError, r"^MultiMarginLoss: margin must be a real number"),
]


@pytest.mark.parametrize("make, error, message", BAD_ARGUMENTS)
def test_bad_constructor_arguments_name_the_layer_and_the_value(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_channel_shuffle_with_indivisible_channels_names_the_layer():
    with pytest.raises(ValueError, match=r"^ChannelShuffle\(2\): the channels must divide into groups=2"):
        nn.ChannelShuffle(2)(tc.randn(1, 3, 2, 2))


def test_numpy_integers_are_accepted_as_sizes():
    m = nn.Conv2d(np.int64(3), np.int32(4), np.int64(3), stride=np.int64(2))
    assert m.in_channels == 3 and type(m.in_channels) is int and m.stride == (2, 2)
    assert m(tc.randn(1, 3, 7, 7)).shape == (1, 4, 3, 3)


def test_layer_names_are_built_only_for_an_error_message():
    from tinyconv.nn import checks
    calls = []

    def describe():
        calls.append(1)
        return "Conv2d(3, 4, kernel_size=(3, 3))"
    where = checks.Described(describe)
    checks.floating_input(where, tc.tensor(np.zeros(2, np.float32)), np.float32)
    assert calls == []                                       # a forward that raises nothing formats nothing
    assert f"{where}: x" == str(where) + ": x" == "Conv2d(3, 4, kernel_size=(3, 3)): x"
    assert f"{where:>40}" == describe().rjust(40)
    with pytest.raises(TypeError, match=r"^Conv2d\(3, 4, kernel_size=\(3, 3\)\): expected a floating-point"):
        checks.floating_input(where, tc.tensor(np.zeros(2, np.int64)))
