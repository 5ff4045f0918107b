"""nn.Module: registration, iteration, train/eval, apply, to(), state dicts, repr, containers, hooks.

A tiny hand-built module tree is mirrored in PyTorch (same class names, same structure) so that names,
orders and reprs can be compared with the reference directly.
"""
from collections import OrderedDict

import numpy as np
import pytest

import tinyconv as tc
from tinyconv import nn
from tinyconv.nn import Module, ModuleDict, ModuleList, Parameter, Sequential


class Tiny(Module):
    """y = x @ weight.T + bias, with a persistent and a non-persistent buffer."""

    def __init__(self, n_in, n_out, bias=True):
        super().__init__()
        self.n_in, self.n_out = n_in, n_out
        self.weight = Parameter(np.random.standard_normal((n_out, n_in)))
        if bias:
            self.bias = Parameter(np.zeros(n_out))
        else:
            self.register_parameter("bias", None)
        self.register_buffer("count", tc.Tensor(np.zeros((), np.int64)))
        self.register_buffer("scratch", tc.Tensor(np.zeros(2)), persistent=False)

    def forward(self, x):
        y = x @ self.weight.transpose(1, 0)
        return y if self.bias is None else y + self.bias

    def extra_repr(self):
        return f"{self.n_in}, {self.n_out}, bias={self.bias is not None}"


class Block(Module):
    def __init__(self, n):
        super().__init__()
        self.inner = Sequential(Tiny(n, n), Tiny(n, n, bias=False))
        self.heads = ModuleDict({"a": Tiny(n, 1), "b": Tiny(n, 2)})
        self.scale = Parameter(np.ones(1))

    def forward(self, x):
        return self.inner(x) * self.scale


def _tree():
    return Sequential(OrderedDict(stem=Tiny(3, 4), body=ModuleList([Block(4), Block(4)]), head=Tiny(4, 2)))


def _torch_tree(torch):
    tnn = torch.nn

    class Tiny(tnn.Module):
        def __init__(self, n_in, n_out, bias=True):
            super().__init__()
            self.n_in, self.n_out = n_in, n_out
            self.weight = tnn.Parameter(torch.randn(n_out, n_in, dtype=torch.float64))
            self.bias = tnn.Parameter(torch.zeros(n_out, dtype=torch.float64)) if bias else None
            self.register_buffer("count", torch.zeros((), dtype=torch.int64))
            self.register_buffer("scratch", torch.zeros(2, dtype=torch.float64), persistent=False)

        def extra_repr(self):
            return f"{self.n_in}, {self.n_out}, bias={self.bias is not None}"

    class Block(tnn.Module):
        def __init__(self, n):
            super().__init__()
            self.inner = tnn.Sequential(Tiny(n, n), Tiny(n, n, bias=False))
            self.heads = tnn.ModuleDict({"a": Tiny(n, 1), "b": Tiny(n, 2)})
            self.scale = tnn.Parameter(torch.ones(1, dtype=torch.float64))

    return tnn.Sequential(OrderedDict(stem=Tiny(3, 4), body=tnn.ModuleList([Block(4), Block(4)]), head=Tiny(4, 2)))


# -- names, orders and repr against PyTorch --------------------------------------------------------
def test_names_and_orders_match_torch(torch):
    ours, theirs = _tree(), _torch_tree(torch)
    assert [k for k, _ in ours.named_parameters()] == [k for k, _ in theirs.named_parameters()]
    assert [k for k, _ in ours.named_buffers()] == [k for k, _ in theirs.named_buffers()]
    assert [k for k, _ in ours.named_modules()] == [k for k, _ in theirs.named_modules()]
    assert [k for k, _ in ours.named_children()] == [k for k, _ in theirs.named_children()]
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert [tuple(v.shape) for v in ours.state_dict().values()] == \
        [tuple(v.shape) for v in theirs.state_dict().values()]
    assert [k for k, _ in ours.body[1].named_parameters(prefix="x", recurse=False)] == \
        [k for k, _ in theirs.body[1].named_parameters(prefix="x", recurse=False)]


def test_repr_matches_torch(torch):
    assert repr(_tree()) == repr(_torch_tree(torch))
    same = ModuleList([Tiny(2, 2), Tiny(2, 2), Tiny(2, 3), Tiny(2, 2)])
    tsame = _torch_tree(torch).stem.__class__
    theirs = torch.nn.ModuleList([tsame(2, 2), tsame(2, 2), tsame(2, 3), tsame(2, 2)])
    assert repr(same) == repr(theirs)
    assert "(0-1): 2 x Tiny(2, 2, bias=True)" in repr(same)
    assert repr(Sequential()) == repr(torch.nn.Sequential()) == "Sequential()"


def test_apply_order_matches_torch(torch):
    ours, theirs = _tree(), _torch_tree(torch)
    names_ours = {id(m): k for k, m in ours.named_modules()}
    names_theirs = {id(m): k for k, m in theirs.named_modules()}
    seen_ours, seen_theirs = [], []
    ours.apply(lambda m: seen_ours.append(names_ours[id(m)]))
    theirs.apply(lambda m: seen_theirs.append(names_theirs[id(m)]))
    assert seen_ours == seen_theirs and seen_ours[-1] == "" and seen_ours[0] == "stem"


def test_state_dict_loads_from_torch_and_back(torch):
    ours, theirs = _tree(), _torch_tree(torch)
    result = ours.load_state_dict(theirs.state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == []
    for (k, v), (tk, tv) in zip(ours.state_dict().items(), theirs.state_dict().items()):
        np.testing.assert_array_equal(v.numpy(), tv.numpy())
    x = np.random.standard_normal((5, 3))
    y = ours.stem(tc.Tensor(x)).numpy()
    np.testing.assert_allclose(y, x @ theirs.stem.weight.detach().numpy().T, rtol=1e-12)
    theirs2 = _torch_tree(torch)
    theirs2.load_state_dict({k: torch.from_numpy(v.numpy()) for k, v in ours.state_dict().items()})
    for a, b in zip(theirs.state_dict().values(), theirs2.state_dict().values()):
        assert torch.equal(a, b)


# -- registration ------------------------------------------------------------------------------------
def test_parameters_buffers_and_children_registration():
    m = Tiny(2, 3, bias=False)
    assert [k for k, _ in m.named_parameters()] == ["weight"]
    assert m.bias is None and "bias" not in m.state_dict()
    assert [k for k, _ in m.named_buffers()] == ["count", "scratch"]
    assert list(m.state_dict()) == ["weight", "count"]  # scratch is not persistent
    m.bias = Parameter(np.ones(3))  # an absent optional parameter can be set later, in its slot
    assert list(m.state_dict()) == ["weight", "bias", "count"]
    m.count = np.ones((), np.int64)  # arrays assigned to a buffer name replace the buffer
    assert isinstance(m.count, tc.Tensor) and m.count.item() == 1
    with pytest.raises(TypeError, match="Parameter or None"):
        m.weight = tc.Tensor(np.zeros((3, 2)))
    with pytest.raises(TypeError, match="buffer"):
        m.count = "one"
    with pytest.raises(KeyError, match="already exists"):
        m.register_buffer("weight", tc.Tensor(np.zeros(1)))
    with pytest.raises(KeyError, match="'.'"):
        m.register_parameter("a.b", None)
    with pytest.raises(TypeError, match="Parameter or None"):
        m.register_parameter("w2", tc.Tensor(np.zeros(1)))
    with pytest.raises(TypeError, match="is not a Module"):
        m.add_module("child", 3)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        m.nothing
    del m.bias
    assert "bias" not in dict(m.named_parameters())
    m.plain = 5  # plain attributes are not registered anywhere
    assert m.plain == 5 and "plain" not in m.state_dict()


def test_reassigning_a_child_keeps_its_position_and_moves_between_stores():
    net = _tree()
    net.stem = Tiny(3, 4, bias=False)  # transfer learning: replace a layer
    assert [k for k, _ in net.named_children()] == ["stem", "body", "head"]
    assert "stem.bias" not in net.state_dict()
    b = Block(2)
    b.scale = Tiny(1, 1)  # a parameter name reused for a module
    assert "scale" not in b._parameters and isinstance(b.scale, Tiny)
    assert [k for k, _ in b.named_parameters()][-2:] == ["scale.weight", "scale.bias"]
    b.scale = None
    assert b.scale is None and "scale.weight" not in b.state_dict()


def test_module_without_init_gives_a_clear_error():
    class Bad(Module):
        def __init__(self):
            self.w = Parameter(np.zeros(1))

    with pytest.raises(AttributeError, match="super\\(\\).__init__"):
        Bad()


def test_shared_parameters_and_modules_are_deduplicated():
    shared = Tiny(2, 2)
    net = Sequential(shared, Tiny(2, 2), shared)
    net[1].weight = shared.weight  # tied weights
    names = [k for k, _ in net.named_parameters()]
    assert names == ["0.weight", "0.bias", "1.bias"]
    assert len(list(net.parameters())) == 3
    assert [k for k, _ in net.named_modules()] == ["", "0", "1"]
    assert len([k for k, _ in net.named_modules(remove_duplicate=False)]) == 4
    # state_dict lists shared tensors under every name, as PyTorch does
    assert list(net.state_dict()) == ["0.weight", "0.bias", "0.count", "1.weight", "1.bias", "1.count",
                                      "2.weight", "2.bias", "2.count"]


def test_train_eval_zero_grad_requires_grad():
    net = _tree()
    assert all(m.training for m in net.modules())
    assert net.eval() is net and not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    with pytest.raises(ValueError, match="bool"):
        net.train("no")
    x = tc.Tensor(np.random.standard_normal((2, 3)))
    net.head(net.stem(x)).sum().backward()
    assert net.stem.weight.grad is not None and net.head.bias.grad is not None
    net.zero_grad(set_to_none=False)
    assert np.all(net.stem.weight.grad.numpy() == 0)
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())
    net.body.requires_grad_(False)
    assert not any(p.requires_grad for p in net.body.parameters()) and net.stem.weight.requires_grad


def test_get_submodule_and_parameter():
    net = _tree()
    assert net.get_submodule("body.1.heads.b") is net.body[1].heads["b"]
    assert net.get_submodule("") is net
    assert net.get_parameter("body.0.inner.1.weight") is net.body[0].inner[1].weight
    with pytest.raises(AttributeError, match="no submodule 'x'"):
        net.get_submodule("body.x")
    with pytest.raises(AttributeError, match="no parameter"):
        net.get_parameter("body.0.inner.1.bias")


def test_to_dtype_keeps_parameter_objects_and_casts_only_floats():
    net = _tree()
    params = list(net.parameters())
    net.stem.weight.grad = tc.Tensor(np.ones((4, 3)))
    assert net.to(np.float32) is net
    assert all(p.dtype == np.float32 for p in net.parameters())
    assert [id(p) for p in net.parameters()] == [id(p) for p in params]
    assert net.stem.weight.grad.dtype == np.float32
    assert net.stem.count.dtype == np.int64 and net.stem.scratch.dtype == np.float32
    net.double()
    assert net.head.weight.dtype == np.float64
    assert net.to("cpu") is net and net.head.weight.device == "cpu"
    with pytest.raises(ValueError, match="unknown device"):
        net.to("tpu")


# -- load_state_dict ------------------------------------------------------------------------------------
def test_load_state_dict_copies_in_place_and_casts():
    src, dst = _tree(), _tree().float()
    arrays = [p.data for p in dst.parameters()]
    sd = {k: v.numpy() for k, v in src.state_dict().items()}  # plain arrays are accepted
    missing, unexpected = dst.load_state_dict(sd)
    assert missing == [] and unexpected == []
    assert all(p.data is a for p, a in zip(dst.parameters(), arrays))
    for k, v in dst.state_dict().items():
        assert v.dtype == (np.int64 if k.endswith("count") else np.float32)
        np.testing.assert_allclose(v.numpy(), sd[k], rtol=1e-6)
    sd["stem.weight"][...] = 7  # no aliasing of the source
    assert not np.any(dst.stem.weight.numpy() == 7)


def test_load_state_dict_reports_every_bad_key_and_copies_nothing():
    net = _tree()
    before = {k: v.numpy().copy() for k, v in net.state_dict().items()}
    sd = {k: v.numpy() + 1 for k, v in _tree().state_dict().items()}
    del sd["head.bias"], sd["body.0.scale"]
    sd["extra.weight"] = np.zeros(3)
    sd["stem.weight"] = np.zeros((4, 5))
    sd["body.1.heads.b.bias"] = np.zeros(7)
    with pytest.raises(RuntimeError) as err:
        net.load_state_dict(sd)
    msg = str(err.value)
    assert "Error(s) in loading state_dict for Sequential" in msg
    assert 'Missing key(s) in state_dict: "body.0.scale", "head.bias".' in msg
    assert 'Unexpected key(s) in state_dict: "extra.weight".' in msg
    assert "size mismatch for stem.weight: copying a param with shape (4, 5) from checkpoint, " \
           "the shape in current model is (4, 3)." in msg
    assert "size mismatch for body.1.heads.b.bias" in msg
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), before[k])
    # non-strict: missing/unexpected are returned, shape mismatches still raise
    with pytest.raises(RuntimeError, match="size mismatch"):
        net.load_state_dict(sd, strict=False)
    sd["stem.weight"] = np.zeros((4, 3))
    sd["body.1.heads.b.bias"] = np.zeros(2)
    result = net.load_state_dict(sd, strict=False)
    assert result == (["body.0.scale", "head.bias"], ["extra.weight"])
    assert np.all(net.stem.weight.numpy() == 0) and np.all(net.head.bias.numpy() == before["head.bias"])


def test_non_persistent_buffer_is_unexpected_in_state_dict():
    m = Tiny(2, 2)
    sd = dict(m.state_dict(), scratch=np.ones(2))
    with pytest.raises(RuntimeError, match='Unexpected key\\(s\\) in state_dict: "scratch"'):
        m.load_state_dict(sd)


def test_state_dict_values_share_memory_and_keep_vars():
    m = Tiny(2, 2)
    sd = m.state_dict()
    assert not isinstance(sd["weight"], Parameter) and sd["weight"].data is m.weight.data
    assert m.state_dict(keep_vars=True)["weight"] is m.weight


# -- containers --------------------------------------------------------------------------------------------
def test_sequential_indexing_and_editing():
    a, b, c = Tiny(2, 2), Tiny(2, 2), Tiny(2, 2)
    s = Sequential(a, b)
    assert len(s) == 2 and s[0] is a and s[-1] is b and list(s) == [a, b]
    x = tc.Tensor(np.random.standard_normal((3, 2)))
    np.testing.assert_allclose(s(x).numpy(), b(a(x)).numpy())
    assert isinstance(s[0:1], Sequential) and list(s[0:1]) == [a]
    s.append(c)
    assert list(s._modules) == ["0", "1", "2"]
    del s[0]
    assert list(s._modules) == ["0", "1"] and list(s) == [b, c]
    s.insert(0, a)
    assert list(s) == [a, b, c]
    s[1] = Tiny(2, 2, bias=False)
    assert s[1] is not b and list(s._modules) == ["0", "1", "2"]
    with pytest.raises(IndexError):
        s[3]
    named = Sequential(OrderedDict(first=a, second=b))
    assert named.first is a and list(named._modules) == ["first", "second"]


def test_module_list_and_dict():
    layers = ModuleList([Tiny(2, 2) for _ in range(3)])
    layers += [Tiny(2, 1)]
    assert len(layers) == 4 and isinstance(layers[1:], ModuleList) and len(layers[1:]) == 3
    assert not isinstance(layers, Sequential)
    with pytest.raises(NotImplementedError):
        layers(tc.Tensor(np.zeros((1, 2))))
    d = ModuleDict([("x", Tiny(1, 1)), ("y", Tiny(1, 2))])
    assert list(d) == ["x", "y"] and "x" in d and len(d) == 2
    replaced = Tiny(1, 3)
    d["x"] = replaced  # replacing keeps the position
    assert list(d.keys()) == ["x", "y"] and d["x"] is replaced
    d.update({"z": Tiny(1, 1)})
    assert list(d) == ["x", "y", "z"] and [k for k, _ in d.items()] == ["x", "y", "z"]
    assert d.pop("y").n_out == 2 and list(d) == ["x", "z"]
    assert list(d.state_dict()) == ["x.weight", "x.bias", "x.count", "z.weight", "z.bias", "z.count"]
    d.clear()
    assert len(d) == 0


def test_forward_hooks_record_and_replace():
    net = Sequential(Tiny(2, 3), Tiny(3, 1))
    seen = []
    handle = net[0].register_forward_hook(lambda m, args, out: seen.append(out.shape))
    pre = net[1].register_forward_pre_hook(lambda m, args: (args[0] * 0,))
    out = net(tc.Tensor(np.ones((4, 2))))
    assert seen == [(4, 3)] and np.all(out.numpy() == 0)  # Tiny(3, 1) bias is zero
    handle.remove()
    pre.remove()
    net(tc.Tensor(np.ones((4, 2))))
    assert seen == [(4, 3)]


def test_nn_namespace_exports():
    assert nn.utils.clip_grad_norm_ is not None and nn.Sequential is Sequential and tc.optim.SGD is not None


def test_deepcopy_gives_independent_parameters():
    import copy
    net = _tree()
    clone = copy.deepcopy(net)
    assert isinstance(clone.stem.weight, Parameter) and clone.stem.weight is not net.stem.weight
    assert list(clone.state_dict()) == list(net.state_dict())
    clone.stem.weight.data[...] = 0
    assert np.any(net.stem.weight.numpy() != 0)
