"""PyTorch as an oracle: random composite expressions, the same in both libraries, must give the same
value and the same gradient for every leaf (skipped where PyTorch is not installed)."""
import types

import numpy as np
import pytest

import tinyconv as tc

pytestmark = pytest.mark.torch
SEEDS = 30


def _libs(torch):
    """The few spellings that differ between the two libraries (tinyconv's alone when ``torch`` is None)."""
    tc_lib = types.SimpleNamespace(
        exp=tc.exp, log=tc.log, sqrt=tc.sqrt, abs=tc.abs, maximum=tc.maximum, where=tc.where,
        cat=lambda xs, d: tc.cat(xs, dim=d), stack=lambda xs, d: tc.stack(xs, dim=d),
        leaf=lambda a: tc.Tensor(a, requires_grad=True), const=tc.Tensor, numpy=lambda x: x.numpy())
    if torch is None:
        return tc_lib, None
    torch_lib = types.SimpleNamespace(
        exp=torch.exp, log=torch.log, sqrt=torch.sqrt, abs=torch.abs, maximum=torch.maximum, where=torch.where,
        cat=lambda xs, d: torch.cat(xs, dim=d), stack=lambda xs, d: torch.stack(xs, dim=d),
        leaf=lambda a: torch.tensor(a, requires_grad=True), const=torch.tensor,
        numpy=lambda x: x.detach().numpy())
    return tc_lib, torch_lib


def _random_program(rng, dtype, n_steps):
    """A list of steps ``step(lib, x, leaves) -> x`` and the shape it starts from.

    Each step draws its parameters (and any new leaf) now, so both libraries replay exactly the same
    program.  Shapes stay tiny; values stay away from the kinks of abs, clamp, maximum and where (random
    continuous values: a tie has probability zero), and from log/sqrt/division singularities.
    """
    shape = tuple(int(n) for n in rng.integers(2, 4, rng.integers(1, 4)))
    steps, cur = [], shape
    probe_lib = _libs(None)[0]
    probe = tc.zeros(shape, dtype=dtype)  # follows the shape along, as the program grows

    def new(shp):
        return rng.standard_normal(shp).astype(dtype)

    def bshape(shp):  # a shape that broadcasts against shp: drop leading axes, set some to 1
        shp = shp[rng.integers(0, len(shp) + 1):] if len(shp) > 1 else shp
        return tuple(1 if rng.random() < 0.3 else n for n in shp)

    for _ in range(n_steps):
        nd = len(cur)
        if nd == 0:
            break
        kind = str(rng.choice(["unary", "binary", "matmul", "reduce", "shape", "index", "catsplit"]))
        f = kind
        if kind == "reduce" and (nd < 2):
            continue  # keep at least one axis, so the next steps have something to work on
        if kind == "unary":
            f = rng.choice(["exp", "log", "sqrt", "abs", "clamp", "square", "neg"])
            step = {"exp": lambda m, x, L: m.exp(x * 0.3), "log": lambda m, x, L: m.log(m.abs(x) + 1),
                    "sqrt": lambda m, x, L: m.sqrt(x * x + 1), "abs": lambda m, x, L: m.abs(x),
                    "clamp": lambda m, x, L: x.clamp(-0.7, 0.8), "square": lambda m, x, L: x ** 2 * 0.5,
                    "neg": lambda m, x, L: -x}[f]
        elif kind == "binary":
            f, b = rng.choice(["add", "sub", "mul", "div", "maximum", "where", "rsub"]), new(bshape(cur))

            def step(m, x, L, f=f, b=b):
                y = m.leaf(b)
                L.append(y)
                return {"add": lambda: x + y, "sub": lambda: x - y, "mul": lambda: x * y,
                        "div": lambda: x / (m.abs(y) + 0.5), "maximum": lambda: m.maximum(x, y),
                        "where": lambda: m.where(x > 0, x, y * 2), "rsub": lambda: 1.5 - y * x}[f]()
        elif kind == "matmul":
            w = new((cur[-1], int(rng.integers(1, 4))))

            def step(m, x, L, w=w):
                L.append(m.leaf(w))
                return x @ L[-1]
        elif kind == "reduce":
            f = str(rng.choice(["sum", "mean", "amax", "amin", "var"]))  # the same methods in both
            d, k = int(rng.integers(-nd, nd)), bool(rng.random() < 0.5)

            def step(m, x, L, f=f, d=d, k=k):
                return getattr(x, f)(dim=d, keepdim=k)
            if f == "var" and cur[d] < 2:
                continue  # the unbiased variance of one element divides by zero
        elif kind == "shape":
            perm = tuple(int(i) for i in rng.permutation(nd))
            f = rng.choice(["permute", "transpose", "flatten", "reshape"])
            step = {"permute": lambda m, x, L, p=perm: x.permute(*p),
                    "transpose": lambda m, x, L, p=perm: x.transpose(p[0], p[-1]),
                    "flatten": lambda m, x, L: x.flatten(), "reshape": lambda m, x, L: x.reshape(-1, 1)}[f]
        elif kind == "index":
            idx = [int(i) for i in rng.integers(0, cur[0], 3)]  # repeats likely
            f = rng.choice(["slice", "fancy", "step"] if cur[0] > 1 else ["fancy"])
            step = {"slice": lambda m, x, L: x[1:], "fancy": lambda m, x, L, i=idx: x[i],
                    "step": lambda m, x, L: x[..., ::2]}[f]
        else:  # cat / stack / split
            d = int(rng.integers(0, nd))
            other = new(cur)
            f = rng.choice(["cat", "stack", "split"])

            def step(m, x, L, f=f, d=d, other=other):
                if f == "split":  # reversed along d, and the first part scaled: every piece is used
                    parts = x.split(1, d)
                    return m.cat([parts[-1]] + list(parts[1:-1]) + [parts[0] * 3], d) if len(parts) > 1 else x * 3
                y = m.leaf(other)
                L.append(y)
                if f == "cat":
                    return m.cat([x, y * 2], d)
                return m.stack([y, x], d)
        step.op = str(f)
        steps.append(step)
        probe = step(probe_lib, probe, [])
        cur = probe.shape
    return shape, steps


def _run(lib, shape, steps, x0, v_rng):
    x = lib.leaf(x0)
    leaves = [x]
    for step in steps:
        x = step(lib, x, leaves)
    v = v_rng.standard_normal(tuple(x.shape)).astype(x0.dtype)
    out = (x * lib.const(v)).sum()
    out.backward()
    return lib.numpy(out), [lib.numpy(leaf.grad) for leaf in leaves]


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-9), (np.float32, 1e-4)])
@pytest.mark.parametrize("seed", range(SEEDS))
def test_random_expressions_match_torch_autograd(torch, seed, dtype, rtol):
    rng = np.random.default_rng(seed)
    shape, steps = _random_program(rng, dtype, n_steps=int(rng.integers(5, 10)))
    x0 = rng.standard_normal(shape).astype(dtype)
    tc_lib, torch_lib = _libs(torch)
    value, grads = _run(tc_lib, shape, steps, x0, np.random.default_rng(seed + 1000))
    t_value, t_grads = _run(torch_lib, shape, steps, x0, np.random.default_rng(seed + 1000))
    scale = max(1.0, abs(float(t_value)))
    np.testing.assert_allclose(value, t_value, rtol=rtol, atol=rtol * scale)
    assert len(grads) == len(t_grads)
    program = " -> ".join(step.op for step in steps)
    for i, (g, t) in enumerate(zip(grads, t_grads)):
        assert g.dtype == dtype
        np.testing.assert_allclose(g, t, rtol=rtol, atol=rtol * max(1.0, np.abs(t).max()),
                                   err_msg=f"gradient of leaf {i} of {shape} -> {program}")


def test_handwritten_expression_float32(torch):
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(s).astype(np.float32) for s in ((4, 3, 5), (5, 2), (2,))]
    results = []
    for lib in (tc, torch):
        x, w, b = (lib.tensor(a, requires_grad=True) for a in arrays)
        h = x @ w + b                                     # (4, 3, 2), bias broadcast
        h = lib.maximum(h, h * 0.1)                       # leaky ReLU
        p = lib.exp(h - h.amax(dim=-1, keepdim=True))
        p = p / p.sum(dim=-1, keepdim=True)               # softmax
        a, c = p.split([1, 1], dim=-1)
        loss = ((lib.log(a + 1e-3) * c).mean() + h[:, [0, 2, 2]].var()
                + lib.cat([x[1:], x[:1]], dim=0)[0].abs().sum() + lib.stack([b, b * b], 1).sum())
        loss.backward()
        results.append([t.detach().numpy() for t in (loss, x.grad, w.grad, b.grad)])
    for mine, theirs in zip(*results):
        assert mine.dtype == np.float32
        np.testing.assert_allclose(mine, theirs, rtol=1e-4, atol=1e-5 * max(1.0, np.abs(theirs).max()))


def test_the_random_programs_exercise_every_op():
    ops = set()
    for seed in range(SEEDS):
        rng = np.random.default_rng(seed)
        ops.update(step.op for step in _random_program(rng, np.float64, n_steps=int(rng.integers(5, 10)))[1])
    assert ops == {"exp", "log", "sqrt", "abs", "clamp", "square", "neg", "add", "sub", "mul", "div", "maximum",
                   "where", "rsub", "matmul", "sum", "mean", "amax", "amin", "var", "permute", "transpose",
                   "flatten", "reshape", "slice", "fancy", "step", "cat", "stack", "split"}
