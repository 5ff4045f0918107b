"""Checkpoints: nested training state saved as one ``.npz`` file, written atomically, loaded with checks.

A checkpoint is a nested structure of dicts, lists, tuples, numbers, strings, ``None``, arrays and Tensors
(a model's ``state_dict()``, an optimiser's, the RNG state, the data loader's position, the history).
``save`` stores every array as its own ``.npz`` member (on the host: a CuPy array is copied to NumPy, so
a checkpoint written on a GPU loads on a CPU and vice versa) and the rest of the structure as JSON in the
member ``__meta__``, with a placeholder where each array was.

Writing is atomic: the file is written to a temporary file in the same folder, flushed to disk
(``fsync``) and renamed over the destination with ``os.replace``.  A crash, a full disk or a kill while
writing therefore leaves the previous checkpoint intact, never a half-written one.

``load`` turns every failure (missing, truncated or corrupt file, a file that is not a tinyconv
checkpoint) into a ``CheckpointError`` whose message names the file; ``check_model_state`` compares a
checkpoint's model weights with a model and names the missing, unexpected and mis-shaped keys.
"""
import json
import os
import tempfile

import numpy as np

from . import backend
from .core import Tensor

FORMAT = "tinyconv-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, or that does not fit the model/optimiser it is loaded into."""


# -- encoding: nested Python structure <-> (JSON skeleton, {name: array}) ------------------------------
def _encode(obj, arrays):
    if isinstance(obj, Tensor) or backend.is_array(obj):
        name = f"a{len(arrays)}"
        arrays[name] = backend.to_numpy(obj.data if isinstance(obj, Tensor) else obj)
        return {"__tensor__" if isinstance(obj, Tensor) else "__array__": name}
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, dict):
        # Keys are kept with their type (optimiser state is keyed by parameter index).
        return {"__dict__": [[_encode(k, arrays), _encode(v, arrays)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        items = [_encode(v, arrays) for v in obj]
        return {"__tuple__": items} if isinstance(obj, tuple) else items
    raise TypeError(f"cannot store a {type(obj).__name__} in a checkpoint")


def _decode(obj, arrays):
    if isinstance(obj, list):
        return [_decode(v, arrays) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj:
        return Tensor(arrays[obj["__tensor__"]])
    if "__array__" in obj:
        return arrays[obj["__array__"]]
    if "__tuple__" in obj:
        return tuple(_decode(v, arrays) for v in obj["__tuple__"])
    return {_decode(k, arrays): _decode(v, arrays) for k, v in obj["__dict__"]}


# -- files --------------------------------------------------------------------------------------------
def atomic_write(path, write):
    """Call ``write(file)`` on a temporary file next to ``path``, fsync it, then rename it to ``path``.

    If ``write`` (or anything before the rename) fails, the temporary file is removed and ``path`` keeps
    its previous content.  Temporary files of ``path`` left by an earlier writer that was killed mid-write
    (``.NAME.*.tmp``) are removed first: one folder has one writer per file (two processes writing the same
    checkpoint at once is not supported).  The file gets the mode a plain ``open(path, 'w')`` would give it
    (the umask's, or the mode of the file it replaces), not ``mkstemp``'s 0600.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    prefix = "." + os.path.basename(path) + "."
    remove_stale_temporaries(folder, prefix)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=".tmp")
    try:
        os.fchmod(fd, new_file_mode(path))
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    _fsync_dir(folder)


def remove_stale_temporaries(folder, prefix, suffix=".tmp"):
    """Delete ``folder/<prefix>XXXXXXXX<suffix>``, the temporary files ``mkstemp`` makes for one destination."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        middle = name[len(prefix):-len(suffix)] if name.startswith(prefix) and name.endswith(suffix) else ""
        if len(middle) == 8 and all(c.isalnum() or c == "_" for c in middle):
            try:
                os.remove(os.path.join(folder, name))
            except OSError:
                pass


def _umask():
    """The process's umask, read without changing it where Linux allows (``os.umask`` sets it, for all threads)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o22)
    os.umask(mask)
    return mask


def new_file_mode(path):
    """The permission bits for a new ``path``: those of the file it replaces, else ``0o666`` less the umask."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        return 0o666 & ~_umask()


def _fsync_dir(folder):
    """Make the rename itself durable (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save(path, state):
    """Write the nested ``state`` (a dict) to ``path`` as an ``.npz`` checkpoint, atomically."""
    arrays = {}
    meta = {"format": FORMAT, "version": VERSION, "state": _encode(state, arrays)}
    members = dict(arrays, __meta__=np.array(json.dumps(meta)))
    atomic_write(path, lambda f: np.savez(f, **members))


def load(path):
    """Read a checkpoint written by ``save``; every arrays comes back as a NumPy array or a CPU Tensor.

    Raises ``CheckpointError`` naming ``path`` if the file is missing, truncated, corrupt or not a
    tinyconv checkpoint.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}     # reading each member checks its CRC
        meta = json.loads(str(arrays.pop("__meta__")))
    except Exception as e:  # zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError, JSONDecodeError...
        raise CheckpointError(f"checkpoint {path} cannot be read: it is truncated, corrupt or not a tinyconv "
                              f"checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is an .npz file but not a tinyconv checkpoint")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {meta.get('version')}; this tinyconv "
                              f"reads version {VERSION}")
    try:
        return _decode(meta["state"], arrays)
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path} is damaged: its index does not match its arrays "
                              f"({type(e).__name__}: {e})") from None


def check_model_state(path, model, state_dict, model_name=None):
    """Raise ``CheckpointError`` unless ``state_dict`` (from checkpoint ``path``) fits ``model`` exactly.

    The message names the file and lists missing keys, unexpected keys and shape mismatches.
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    mismatched = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
                  for k, v in state_dict.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if not (missing or unexpected or mismatched):
        return
    saved = f" (saved from {model_name})" if model_name else ""
    lines = [f"checkpoint {path}{saved} does not fit the model {type(model).__name__}:"]
    if mismatched:
        lines.append("  shape mismatch for " + "; ".join(mismatched))
    if missing:
        lines.append("  missing keys: " + ", ".join(missing))
    if unexpected:
        lines.append("  unexpected keys: " + ", ".join(unexpected))
    raise CheckpointError("\n".join(lines))
