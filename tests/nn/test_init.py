"""nn.init: sample statistics match each formula; skip_init leaves tensors alone; gains and fans equal PyTorch's."""
import math

import numpy as np
import pytest

import tinyconv as tc
from tinyconv.nn import init

# (out, in, KH, KW): fan_in = 64 * 9 = 576, fan_out = 128 * 9 = 1152; 73728 samples
SHAPE = (128, 64, 3, 3)
FAN_IN, FAN_OUT = 64 * 9, 128 * 9


def _empty(shape=SHAPE, dtype=np.float32):
    return tc.empty(*shape, dtype=dtype)


def _check_uniform(x, bound):
    v = x.numpy().astype(np.float64)
    assert v.min() >= -bound and v.max() <= bound
    assert v.max() > 0.99 * bound and v.min() < -0.99 * bound  # fills the whole interval
    assert abs(v.mean()) < 0.02 * bound
    assert v.std() == pytest.approx(bound / math.sqrt(3), rel=0.02)


def _check_normal(x, mean, std):
    v = x.numpy().astype(np.float64)
    assert v.mean() == pytest.approx(mean, abs=0.02 * std)
    assert v.std() == pytest.approx(std, rel=0.02)


def test_uniform_and_normal():
    x = init.uniform_(_empty(), -0.5, 1.5)
    v = x.numpy()
    assert v.min() >= -0.5 and v.max() < 1.5
    assert v.mean() == pytest.approx(0.5, abs=0.02) and v.std() == pytest.approx(2 / math.sqrt(12), rel=0.02)
    _check_normal(init.normal_(_empty(), 3.0, 0.25), 3.0, 0.25)


@pytest.mark.parametrize("gain", [1.0, 5.0 / 3])
def test_xavier(gain):
    _check_uniform(init.xavier_uniform_(_empty(), gain=gain), gain * math.sqrt(6.0 / (FAN_IN + FAN_OUT)))
    _check_normal(init.xavier_normal_(_empty(), gain=gain), 0.0, gain * math.sqrt(2.0 / (FAN_IN + FAN_OUT)))


@pytest.mark.parametrize("mode,fan", [("fan_in", FAN_IN), ("fan_out", FAN_OUT)])
@pytest.mark.parametrize("a,nonlinearity,gain", [(0, "relu", math.sqrt(2)),
                                                 (math.sqrt(5), "leaky_relu", math.sqrt(2 / 6)),
                                                 (0.2, "leaky_relu", math.sqrt(2 / 1.04)),
                                                 (0, "linear", 1.0)])
def test_kaiming(mode, fan, a, nonlinearity, gain):
    _check_uniform(init.kaiming_uniform_(_empty(), a=a, mode=mode, nonlinearity=nonlinearity),
                   gain * math.sqrt(3.0 / fan))
    _check_normal(init.kaiming_normal_(_empty(), a=a, mode=mode, nonlinearity=nonlinearity), 0.0,
                  gain / math.sqrt(fan))


def test_kaiming_uniform_sqrt5_is_pytorch_layer_default():
    # PyTorch's Conv2d/Linear default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    _check_uniform(init.kaiming_uniform_(_empty(), a=math.sqrt(5)), 1 / math.sqrt(FAN_IN))


def test_trunc_normal():
    mean, std, a, b = 0.5, 1.0, -1.0, 2.0
    v = init.trunc_normal_(_empty(), mean, std, a, b).numpy().astype(np.float64)
    assert v.min() >= a and v.max() <= b
    # moments of N(mean, std^2) truncated to [a, b]
    pdf = lambda z: math.exp(-z * z / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    cdf = lambda z: 0.5 * (1 + math.erf(z / math.sqrt(2)))  # noqa: E731
    al, be = (a - mean) / std, (b - mean) / std
    Z = cdf(be) - cdf(al)
    t_mean = mean + std * (pdf(al) - pdf(be)) / Z
    t_var = std ** 2 * (1 + (al * pdf(al) - be * pdf(be)) / Z - ((pdf(al) - pdf(be)) / Z) ** 2)
    assert v.mean() == pytest.approx(t_mean, abs=0.02)
    assert v.std() == pytest.approx(math.sqrt(t_var), rel=0.02)


def test_constant_zeros_ones_in_place_and_dtype():
    x = _empty((3, 4), np.float64)
    arr = x.data
    assert init.constant_(x, 0.25) is x and x.data is arr and np.all(x.numpy() == 0.25)
    assert np.all(init.zeros_(x).numpy() == 0) and np.all(init.ones_(x).numpy() == 1)
    y = init.kaiming_normal_(_empty((8, 4), np.float32))
    assert y.dtype == np.float32


def test_seeded_draws_repeat():
    tc.manual_seed(7)
    first = init.xavier_uniform_(_empty((5, 6))).numpy().copy()
    tc.manual_seed(7)
    second = init.xavier_uniform_(_empty((5, 6))).numpy()
    np.testing.assert_array_equal(first, second)


ALL_FILLS = [
    lambda t: init.uniform_(t), lambda t: init.normal_(t), lambda t: init.trunc_normal_(t),
    lambda t: init.constant_(t, 3.0), lambda t: init.zeros_(t), lambda t: init.ones_(t),
    lambda t: init.xavier_uniform_(t), lambda t: init.xavier_normal_(t),
    lambda t: init.kaiming_uniform_(t, a=math.sqrt(5)), lambda t: init.kaiming_normal_(t, mode="fan_out"),
]


@pytest.mark.parametrize("fill", ALL_FILLS)
def test_skip_init_leaves_values_untouched(fill):
    x = tc.tensor(np.arange(24, dtype=np.float32).reshape(4, 6))
    before = x.numpy().copy()
    with init.skip_init():
        with init.skip_init():
            assert fill(x) is x
        assert fill(x) is x  # still skipping after the inner context ends
    np.testing.assert_array_equal(x.numpy(), before)
    fill(x)  # outside: filled again
    assert not np.array_equal(x.numpy(), before)


def test_skip_init_restored_after_an_exception():
    with pytest.raises(RuntimeError):
        with init.skip_init():
            raise RuntimeError("boom")
    x = init.ones_(_empty((2,)))
    assert np.all(x.numpy() == 1)


def test_calculate_gain_equals_torch(torch):
    names = ["linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
             "conv_transpose3d", "sigmoid", "tanh", "relu", "selu", "leaky_relu"]
    for name in names:
        assert init.calculate_gain(name) == pytest.approx(torch.nn.init.calculate_gain(name), rel=1e-15), name
    for slope in (0, 0.2, 1, math.sqrt(5)):
        assert init.calculate_gain("leaky_relu", slope) == \
            pytest.approx(torch.nn.init.calculate_gain("leaky_relu", slope), rel=1e-15)
    with pytest.raises(ValueError, match="unsupported nonlinearity"):
        init.calculate_gain("softsign")
    with pytest.raises(ValueError, match="not a valid number"):
        init.calculate_gain("leaky_relu", True)


@pytest.mark.parametrize("shape", [(2, 3), (4, 3, 5, 5), (8, 1, 3, 3), (6, 2, 7)])
def test_fans_equal_torch(torch, shape):
    ours = init._calculate_fan_in_and_fan_out(_empty(shape))
    assert ours == torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))


def test_fans_need_two_dimensions():
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        init.xavier_uniform_(_empty((5,)))
    with pytest.raises(ValueError, match="mode"):
        init.kaiming_normal_(_empty((2, 2)), mode="fan_avg")
