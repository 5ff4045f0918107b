"""``SequentialLR``: one schedule after another at given milestones (a warm-up, then the main schedule)."""
from bisect import bisect_right

from .lr_scheduler import LRScheduler, ReduceLROnPlateau, _checked_state


class SequentialLR(LRScheduler):
    """Run ``schedulers[0]`` until ``milestones[0]``, then ``schedulers[1]`` (restarted at its epoch 0), ...

    The usual use is a ``LinearLR`` warm-up followed by the main schedule.
    """

    def __init__(self, optimizer, schedulers, milestones, last_epoch=-1):
        if len(schedulers) < 1:
            raise ValueError("SequentialLR expects at least one scheduler")
        for i, s in enumerate(schedulers):
            if isinstance(s, ReduceLROnPlateau):
                raise ValueError("SequentialLR cannot run ReduceLROnPlateau (its step() needs the metric)")
            if getattr(s, "optimizer", None) is not optimizer:
                raise ValueError(f"SequentialLR: scheduler {i} ({type(s).__name__}) belongs to another optimizer")
        if len(milestones) != len(schedulers) - 1:
            raise ValueError(f"SequentialLR expects one milestone fewer than schedulers, got {len(schedulers)} "
                             f"schedulers and {len(milestones)} milestones")
        self._schedulers = list(schedulers)
        self._milestones = list(milestones)
        self.last_epoch = last_epoch + 1
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"]
        # Undo the initial step each scheduler took when it was built, then take it for the first only.
        _undo_initial_steps(self)
        first = self._schedulers[bisect_right(self._milestones, 0)]
        first._initial_step()
        self._last_lr = first.get_last_lr()

    def step(self):
        self.last_epoch += 1
        idx = bisect_right(self._milestones, self.last_epoch)
        scheduler = self._schedulers[idx]
        if idx > 0 and self._milestones[idx - 1] == self.last_epoch:
            scheduler._update_lr(0)
        else:
            scheduler.step()
        self._last_lr = scheduler.get_last_lr()

    def state_dict(self):
        state = {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "_schedulers")}
        state["_schedulers"] = [s.state_dict() for s in self._schedulers]
        return state

    def load_state_dict(self, state_dict):
        state = _checked_state(self, state_dict, exclude=("_schedulers",))
        saved = state_dict.get("_schedulers")
        if not isinstance(saved, list) or len(saved) != len(self._schedulers):
            raise TypeError(f"SequentialLR.load_state_dict: '_schedulers' must be a list of "
                            f"{len(self._schedulers)} state dicts, got {saved!r:.80}")
        for s, sd in zip(self._schedulers, saved):
            _checked_state(s, sd, exclude=("lr_lambdas", "_schedulers"))   # all checked before any changes
        self.__dict__.update(state)
        for s, sd in zip(self._schedulers, saved):
            s.load_state_dict(sd)


def _undo_initial_steps(scheduler):
    stack = [scheduler]
    while stack:
        s = stack.pop()
        if hasattr(s, "_schedulers"):
            stack.extend(s._schedulers)
        else:
            s.last_epoch -= 1
