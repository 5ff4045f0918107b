"""Learning-rate schedules (``tinyconv.optim.lr_scheduler``), with PyTorch's classes and arithmetic.

Lecture 003 ("Заметки по процедуре обучения"): the learning rate is lowered as training goes on so the
weights converge, usually exponentially, and changed between epochs.  A scheduler rewrites
``group["lr"]`` of its optimizer each time ``step()`` is called (after ``optimizer.step()``, once per epoch or
per iteration, as you choose)::

    opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = SequentialLR(opt, [LinearLR(opt, start_factor=0.1, total_iters=5),
                               CosineAnnealingLR(opt, T_max=85)], milestones=[5])
    for epoch in range(90):
        train_one_epoch(model, opt)
        sched.step()

Constructing a scheduler takes its initial step at once (``last_epoch`` goes from -1 to 0) and records
``group["initial_lr"]``.  The rules are PyTorch's recursive ("chainable") forms, so several schedulers may
act on one optimizer.  To resume, build the optimizer and scheduler as before, then load the optimizer's
state dict and then the scheduler's (building a scheduler after loading would step the loaded lr again).
``ReduceLROnPlateau`` is the exception: its ``step(metric)`` takes the validation loss (or accuracy).
``state_dict()`` is a plain dict of Python numbers and lists (``LambdaLR`` functions are not saved, as in
PyTorch: only the attributes of callable objects are).
"""
import math
import types
from bisect import bisect_right
from collections import Counter

from .optimizer import Optimizer


class LRScheduler:
    """Base class: subclasses implement ``get_lr()`` (the new lr of every group, from ``last_epoch``)."""

    def __init__(self, optimizer, last_epoch=-1):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__}: {type(optimizer).__name__} is not an Optimizer")
        self.optimizer = optimizer
        for i, group in enumerate(optimizer.param_groups):
            if last_epoch == -1:
                group.setdefault("initial_lr", group["lr"])
            elif "initial_lr" not in group:
                raise KeyError(f"{type(self).__name__}: param_groups[{i}] has no 'initial_lr'; resuming with "
                               "last_epoch >= 0 needs the optimizer state of the run being resumed")
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._initial_step()

    def _initial_step(self):
        self._step_count = 0
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    def get_lr(self):
        raise NotImplementedError(f"{type(self).__name__} must implement get_lr")

    def get_last_lr(self):
        """The learning rates this scheduler set last, one per parameter group."""
        return list(self._last_lr)

    def step(self):
        """Advance one epoch (or iteration) and write the new learning rates into the optimizer."""
        self._step_count += 1
        self._update_lr()

    def _update_lr(self, epoch=None):
        # With an explicit epoch (SequentialLR's hand-over at a milestone) use the closed form if there is one.
        if epoch is None:
            self.last_epoch += 1
            values = self.get_lr()
        else:
            self.last_epoch = epoch
            values = self._closed_form_lr() if hasattr(self, "_closed_form_lr") else self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, values):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def _current_lrs(self):
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self):
        """Every attribute except the optimizer (plain Python values)."""
        return {k: v for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state_dict):
        """Restore ``state_dict()``: only this scheduler's own attributes, each with the type it has now
        (a number stays a number, a list a list of numbers); anything else raises ``ValueError``/``TypeError``
        naming the key, before any attribute changes.  (PyTorch updates ``__dict__`` with whatever the file
        holds, so a file could replace ``optimizer`` or ``get_lr``.)"""
        self.__dict__.update(_checked_state(self, state_dict))


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _fits(current, new):
    """Whether ``new`` may replace the attribute value ``current`` (plain data of the same kind)."""
    if isinstance(current, bool):
        return isinstance(new, bool)
    if _is_number(current):
        return _is_number(new)
    if isinstance(current, str):
        return isinstance(new, str)
    if isinstance(current, (list, tuple)):
        return isinstance(new, (list, tuple)) and all(_is_number(v) or v is None for v in new)
    if isinstance(current, dict):
        return isinstance(new, dict) and all(_is_number(v) for v in new.values()) \
            and all(_is_number(k) or isinstance(k, str) for k in new)
    if current is None:
        return new is None or _is_number(new) or isinstance(new, (str, bool)) or _fits([], new)
    return False


def _checked_state(scheduler, state_dict, exclude=()):
    """The entries of ``state_dict`` that ``scheduler`` may take, all checked before any is used."""
    name = type(scheduler).__name__
    if not isinstance(state_dict, dict):
        raise TypeError(f"{name}.load_state_dict: expected a dict, got {type(state_dict).__name__}")
    own = {k: v for k, v in scheduler.__dict__.items() if k != "optimizer" and k not in exclude}
    unknown = [k for k in state_dict if k not in own and k not in exclude]
    if unknown:
        raise ValueError(f"{name}.load_state_dict: unknown keys {', '.join(map(repr, unknown))} (this scheduler "
                         f"has {', '.join(own)}); is the state dict of another scheduler?")
    for k, v in state_dict.items():
        if k not in exclude and not _fits(own[k], v):
            raise TypeError(f"{name}.load_state_dict: {k!r} must be like {own[k]!r} "
                            f"({type(own[k]).__name__}), got {type(v).__name__} {v!r:.80}")
    return {k: v for k, v in state_dict.items() if k not in exclude}


class LambdaLR(LRScheduler):
    """``lr = base_lr * lr_lambda(epoch)``; ``lr_lambda`` is a function or a list of one per group."""

    def __init__(self, optimizer, lr_lambda, last_epoch=-1):
        if isinstance(lr_lambda, (list, tuple)):
            if len(lr_lambda) != len(optimizer.param_groups):
                raise ValueError(f"LambdaLR: expected {len(optimizer.param_groups)} lr_lambdas, got {len(lr_lambda)}")
            self.lr_lambdas = list(lr_lambda)
        else:
            self.lr_lambdas = [lr_lambda] * len(optimizer.param_groups)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        return [base_lr * fn(self.last_epoch) for fn, base_lr in zip(self.lr_lambdas, self.base_lrs)]

    def state_dict(self):
        """As the base class, but functions are not saved: ``lr_lambdas`` holds ``None`` for plain functions
        and lambdas, and the attribute dict of callable objects."""
        state = {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "lr_lambdas")}
        state["lr_lambdas"] = [None if isinstance(fn, types.FunctionType) else dict(fn.__dict__)
                               for fn in self.lr_lambdas]
        return state

    def load_state_dict(self, state_dict):
        state = _checked_state(self, state_dict, exclude=("lr_lambdas",))
        saved = state_dict.get("lr_lambdas", [None] * len(self.lr_lambdas))
        if not isinstance(saved, list) or len(saved) != len(self.lr_lambdas) \
                or not all(a is None or isinstance(a, dict) for a in saved):
            raise TypeError(f"LambdaLR.load_state_dict: 'lr_lambdas' must be a list of {len(self.lr_lambdas)} "
                            f"dicts or None, got {saved!r:.80}")
        self.__dict__.update(state)
        for fn, attrs in zip(self.lr_lambdas, saved):
            if attrs is not None:
                fn.__dict__.update(attrs)


class StepLR(LRScheduler):
    """Multiply the lr by ``gamma`` every ``step_size`` epochs: ``lr = base_lr * gamma^(epoch // step_size)``."""

    def __init__(self, optimizer, step_size, gamma=0.1, last_epoch=-1):
        self.step_size = step_size
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return self._current_lrs()
        return [lr * self.gamma for lr in self._current_lrs()]

    def _closed_form_lr(self):
        return [base_lr * self.gamma ** (self.last_epoch // self.step_size) for base_lr in self.base_lrs]


class MultiStepLR(LRScheduler):
    """Multiply the lr by ``gamma`` at each epoch in ``milestones`` (AlexNet/ResNet-style drops)."""

    def __init__(self, optimizer, milestones, gamma=0.1, last_epoch=-1):
        self.milestones = Counter(milestones)
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self.last_epoch not in self.milestones:
            return self._current_lrs()
        return [lr * self.gamma ** self.milestones[self.last_epoch] for lr in self._current_lrs()]

    def _closed_form_lr(self):
        milestones = sorted(self.milestones.elements())
        return [base_lr * self.gamma ** bisect_right(milestones, self.last_epoch) for base_lr in self.base_lrs]

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        # Keys may come back as strings from a JSON round trip.
        self.milestones = Counter({int(k): v for k, v in dict(self.milestones).items()})


class ExponentialLR(LRScheduler):
    """Multiply the lr by ``gamma`` every epoch: ``lr = base_lr * gamma^epoch``."""

    def __init__(self, optimizer, gamma, last_epoch=-1):
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self._is_initial:
            return self._current_lrs()
        return [lr * self.gamma for lr in self._current_lrs()]

    def _closed_form_lr(self):
        return [base_lr * self.gamma ** self.last_epoch for base_lr in self.base_lrs]


class LinearLR(LRScheduler):
    """Linear warm-up (or decay) of the lr factor from ``start_factor`` to ``end_factor`` over ``total_iters``.

    ``lr = base_lr * (start_factor + (end_factor - start_factor) * min(epoch, total_iters) / total_iters)``,
    computed recursively from the previous lr as PyTorch does.
    """

    def __init__(self, optimizer, start_factor=1.0 / 3, end_factor=1.0, total_iters=5, last_epoch=-1):
        if not 0 < start_factor <= 1:
            raise ValueError("LinearLR: start_factor must be in (0, 1]")
        if not 0 <= end_factor <= 1:
            raise ValueError("LinearLR: end_factor must be in [0, 1]")
        self.start_factor = start_factor
        self.end_factor = end_factor
        self.total_iters = total_iters
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self.last_epoch == 0:
            return [lr * self.start_factor for lr in self._current_lrs()]
        if self._is_initial or self.last_epoch > self.total_iters:
            return self._current_lrs()
        slope = self.end_factor - self.start_factor
        # factor(e) / factor(e - 1) with factor(e) = start + slope * e / total
        ratio = 1.0 + slope / (self.total_iters * self.start_factor + (self.last_epoch - 1) * slope)
        return [lr * ratio for lr in self._current_lrs()]

    def _closed_form_lr(self):
        slope = self.end_factor - self.start_factor
        return [base_lr * (self.start_factor + slope * min(self.total_iters, self.last_epoch) / self.total_iters)
                for base_lr in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    r"""Cosine annealing (Loshchilov & Hutter, SGDR, 2017, without restarts).

    ``lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2``, computed recursively::

        lr_e = eta_min + (lr_{e-1} - eta_min) * (1 + cos(pi e / T_max)) / (1 + cos(pi (e - 1) / T_max))

    Past ``T_max`` the lr rises again along the same cosine, as in PyTorch.
    """

    def __init__(self, optimizer, T_max, eta_min=0.0, last_epoch=-1):
        self.T_max = T_max
        self.eta_min = eta_min
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self._is_initial:
            return self._current_lrs()
        if self._step_count == 1 and self.last_epoch > 0:
            return self._closed_form_lr()
        if (self.last_epoch - 1 - self.T_max) % (2 * self.T_max) == 0:
            # The recursion divides by 1 + cos(pi) = 0 at the bottom of the cosine; step up from there.
            return [lr + (base_lr - self.eta_min) * (1 - math.cos(math.pi / self.T_max)) / 2
                    for base_lr, lr in zip(self.base_lrs, self._current_lrs())]
        ratio = ((1 + math.cos(math.pi * self.last_epoch / self.T_max))
                 / (1 + math.cos(math.pi * (self.last_epoch - 1) / self.T_max)))
        return [ratio * (lr - self.eta_min) + self.eta_min for lr in self._current_lrs()]

    def _closed_form_lr(self):
        return [self.eta_min + (base_lr - self.eta_min) * (1 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2
                for base_lr in self.base_lrs]


class ReduceLROnPlateau(LRScheduler):
    """Divide the lr by ``1 / factor`` when a monitored metric has stopped improving (``step(metric)``).

    AlexNet's schedule (Krizhevsky et al., 2012): "divide the learning rate by 10 when the validation error
    rate stopped improving".  After ``patience`` epochs without an improvement better than ``threshold``
    (relative: ``metric < best * (1 - threshold)`` in ``'min'`` mode; ``'abs'``: ``metric < best - threshold``)
    every group's lr becomes ``max(lr * factor, min_lr)``; then ``cooldown`` epochs pass before counting
    again.  PyTorch's rules; unlike the other schedulers, ``step`` takes the metric.
    """

    def __init__(self, optimizer, mode="min", factor=0.1, patience=10, threshold=1e-4, threshold_mode="rel",
                 cooldown=0, min_lr=0, eps=1e-8):
        if factor >= 1.0:
            raise ValueError("ReduceLROnPlateau: factor should be < 1.0")
        if mode not in ("min", "max"):
            raise ValueError(f"ReduceLROnPlateau: mode {mode!r} is unknown (expected 'min' or 'max')")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"ReduceLROnPlateau: threshold mode {threshold_mode!r} is unknown "
                             "(expected 'rel' or 'abs')")
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"ReduceLROnPlateau: {type(optimizer).__name__} is not an Optimizer")
        if isinstance(min_lr, (list, tuple)):
            if len(min_lr) != len(optimizer.param_groups):
                raise ValueError(f"ReduceLROnPlateau: expected {len(optimizer.param_groups)} min_lrs, "
                                 f"got {len(min_lr)}")
            self.min_lrs = list(min_lr)
        else:
            self.min_lrs = [min_lr] * len(optimizer.param_groups)
        self.optimizer = optimizer
        self.factor, self.patience, self.cooldown, self.eps = factor, patience, cooldown, eps
        self.mode, self.threshold, self.threshold_mode = mode, threshold, threshold_mode
        self.last_epoch = 0
        self._last_lr = self._current_lrs()
        self.best = math.inf if mode == "min" else -math.inf
        self.cooldown_counter = 0
        self.num_bad_epochs = 0

    def _is_better(self, a, best):
        if self.mode == "min":
            return a < (best * (1.0 - self.threshold) if self.threshold_mode == "rel" else best - self.threshold)
        return a > (best * (1.0 + self.threshold) if self.threshold_mode == "rel" else best + self.threshold)

    def step(self, metrics):
        current = float(metrics.item() if hasattr(metrics, "item") else metrics)
        self.last_epoch += 1
        if self._is_better(current, self.best):
            self.best, self.num_bad_epochs = current, 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0  # bad epochs during cooldown do not count
        if self.num_bad_epochs > self.patience:
            for group, min_lr in zip(self.optimizer.param_groups, self.min_lrs):
                new_lr = max(group["lr"] * self.factor, min_lr)
                if group["lr"] - new_lr > self.eps:
                    group["lr"] = new_lr
            self.cooldown_counter, self.num_bad_epochs = self.cooldown, 0
        self._last_lr = self._current_lrs()
