"""``OneCycleLR``: the 1cycle policy (Smith & Topin, "Super-Convergence", 2018), with PyTorch's arithmetic.

The learning rate rises from ``max_lr / div_factor`` to ``max_lr`` over the first ``pct_start`` of the
``total_steps`` and then anneals to ``max_lr / (div_factor * final_div_factor)``; the momentum (SGD's
``momentum``, Adam's ``beta1``) moves the other way, from ``max_momentum`` down to ``base_momentum`` and back.
``three_phase=True`` (the paper's version) goes back down to the initial lr symmetrically before the final
annealing.  Each phase interpolates with ``pct`` the fraction of it done:

    cos:     lr = end + (start - end) * (1 + cos(pi * pct)) / 2
    linear:  lr = start + (end - start) * pct

``step()`` is called after every batch (not every epoch); stepping past ``total_steps`` raises.
"""
import math

from .lr_scheduler import LRScheduler


def _anneal_cos(start, end, pct):
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)


def _anneal_linear(start, end, pct):
    return (end - start) * pct + start


class OneCycleLR(LRScheduler):
    """The 1cycle schedule of learning rate and momentum (module docstring); PyTorch's arguments and defaults."""

    def __init__(self, optimizer, max_lr, total_steps=None, epochs=None, steps_per_epoch=None, pct_start=0.3,
                 anneal_strategy="cos", cycle_momentum=True, base_momentum=0.85, max_momentum=0.95,
                 div_factor=25.0, final_div_factor=1e4, three_phase=False, last_epoch=-1):
        if total_steps is None:
            if epochs is None or steps_per_epoch is None:
                raise ValueError("OneCycleLR: give total_steps, or both epochs and steps_per_epoch")
            for name, v in (("epochs", epochs), ("steps_per_epoch", steps_per_epoch)):
                if not isinstance(v, int) or v <= 0:
                    raise ValueError(f"OneCycleLR: expected a positive integer {name}, got {v!r}")
            total_steps = epochs * steps_per_epoch
        if not isinstance(total_steps, int) or total_steps <= 0:
            raise ValueError(f"OneCycleLR: expected a positive integer total_steps, got {total_steps!r}")
        if not 0 <= pct_start <= 1 or not isinstance(pct_start, (int, float)):
            raise ValueError(f"OneCycleLR: expected a float between 0 and 1 for pct_start, got {pct_start!r}")
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"OneCycleLR: anneal_strategy must be 'cos' or 'linear', got {anneal_strategy!r}")
        self.total_steps = total_steps
        self.anneal_strategy = anneal_strategy
        self.cycle_momentum = cycle_momentum
        p = float(pct_start * total_steps)
        if three_phase:
            self._phases = [(p - 1, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                            (2 * p - 2, "max_lr", "initial_lr", "base_momentum", "max_momentum"),
                            (total_steps - 1, "initial_lr", "min_lr", "max_momentum", "max_momentum")]
        else:
            self._phases = [(p - 1, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                            (total_steps - 1, "max_lr", "min_lr", "base_momentum", "max_momentum")]
        groups = optimizer.param_groups
        max_lrs = list(max_lr) if isinstance(max_lr, (list, tuple)) else [max_lr] * len(groups)
        if len(max_lrs) != len(groups):
            raise ValueError(f"OneCycleLR: expected {len(groups)} max_lr values, got {len(max_lrs)}")
        if last_epoch == -1:
            for group, m in zip(groups, max_lrs):
                group["initial_lr"] = m / div_factor
                group["max_lr"] = m
                group["min_lr"] = group["initial_lr"] / final_div_factor
        self.use_beta1 = "betas" in getattr(optimizer, "defaults", groups[0])
        if cycle_momentum:
            if "momentum" not in groups[0] and "betas" not in groups[0]:
                raise ValueError(f"OneCycleLR: cycle_momentum=True needs an optimizer with momentum or betas; "
                                 f"{type(optimizer).__name__} has neither (pass cycle_momentum=False)")
            moms = (lambda v: list(v) if isinstance(v, (list, tuple)) else [v] * len(groups))
            if last_epoch == -1:
                for group, lo, hi in zip(groups, moms(base_momentum), moms(max_momentum)):
                    self._set_momentum(group, hi)
                    group["base_momentum"], group["max_momentum"] = lo, hi
        super().__init__(optimizer, last_epoch)

    def _set_momentum(self, group, value):
        if self.use_beta1:
            group["betas"] = (value, *group["betas"][1:])
        else:
            group["momentum"] = value

    def get_lr(self):
        step = self.last_epoch
        if step > self.total_steps:
            raise ValueError(f"OneCycleLR: tried to step {step} times; the specified number of total steps is "
                             f"{self.total_steps} (one step per batch: total_steps = epochs * steps_per_epoch)")
        anneal = _anneal_cos if self.anneal_strategy == "cos" else _anneal_linear
        lrs = []
        for group in self.optimizer.param_groups:
            start = 0.0
            for i, (end, lr0, lr1, m0, m1) in enumerate(self._phases):
                if step <= end or i == len(self._phases) - 1:
                    pct = (step - start) / (end - start)
                    lrs.append(anneal(group[lr0], group[lr1], pct))
                    if self.cycle_momentum:
                        self._set_momentum(group, anneal(group[m0], group[m1], pct))
                    break
                start = end
        return lrs
