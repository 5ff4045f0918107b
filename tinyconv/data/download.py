"""Downloading a file from a list of mirrors, with checksum verification and an atomic write.

``download_url(urls, path, md5=...)`` tries each URL in turn (up to ``attempts`` times), streams the body into a
temporary file *in the target folder* while hashing it, checks the MD5 (or SHA-256) digest, and only then
renames the temporary file onto ``path`` with ``os.replace`` (atomic on one file system).  An interrupted or
failed download therefore never leaves a half-written ``path`` behind, and the temporary file is removed.
Any URL ``urllib`` opens works: ``https://``, ``http://`` and ``file://`` (the tests use a local server).

Set ``TINYCONV_OFFLINE=1`` to forbid downloads everywhere (``is_offline()``); datasets then fall back to
what is on disk.
"""
import hashlib
import os
import tempfile
import time

from ..checkpoint import new_file_mode

CHUNK = 1 << 16


class DownloadError(RuntimeError):
    """Every mirror failed; the message lists each URL with the reason it failed."""


class ChecksumError(DownloadError):
    """The downloaded bytes do not have the expected digest."""


def is_offline():
    """True when ``TINYCONV_OFFLINE`` is set to something other than ``0``/empty: no downloads at all."""
    return os.environ.get("TINYCONV_OFFLINE", "") not in ("", "0")


def file_digest(path, algorithm="md5"):
    """The hex digest of a file's bytes."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _fetch(url, tmp, algorithm, timeout, progress, desc):
    """Stream ``url`` into the open file ``tmp``; return the hex digest of what was written."""
    import urllib.request  # here, not at the top: http.client costs ~0.1 s of `import tinyconv`
    h = hashlib.new(algorithm)
    req = urllib.request.Request(url, headers={"User-Agent": "tinyconv"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        total = resp.headers.get("Content-Length")
        total = int(total) if total and total.isdigit() else None
        bar = None
        if progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, leave=False)
        try:
            got = 0
            for chunk in iter(lambda: resp.read(CHUNK), b""):
                tmp.write(chunk)
                h.update(chunk)
                got += len(chunk)
                if bar is not None:
                    bar.update(len(chunk))
        finally:
            if bar is not None:
                bar.close()
    if total is not None and got != total:
        raise DownloadError(f"connection closed early: expected {total} bytes, got {got}")
    return h.hexdigest()


def download_url(urls, path, md5=None, sha256=None, attempts=2, timeout=30.0, progress=True, backoff=0.5):
    """Download the first of ``urls`` that works to ``path``, verifying its checksum; return ``path``.

    ``urls``: a URL or a list of mirror URLs for the same file, tried in order.  ``md5``/``sha256``: the
    expected hex digest (one of them; with neither, nothing is verified).  ``attempts``: tries per URL
    (network errors only; a checksum mismatch moves on to the next mirror at once).  ``progress``: a tqdm
    bar.  Raises :class:`DownloadError` listing every attempt when all fail; ``path`` is then untouched.
    """
    import http.client
    if isinstance(urls, str):
        urls = [urls]
    path = os.fspath(path)
    if is_offline():
        raise DownloadError(f"not downloading {os.path.basename(path)}: TINYCONV_OFFLINE is set")
    algorithm, expected = ("sha256", sha256) if sha256 else ("md5", md5)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    failures = []
    for url in urls:
        for attempt in range(1, max(1, attempts) + 1):
            fd, tmp_path = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".part")
            try:
                os.fchmod(fd, new_file_mode(path))      # the umask's mode, not mkstemp's 0600
                with os.fdopen(fd, "wb") as tmp:
                    digest = _fetch(url, tmp, algorithm, timeout, progress, os.path.basename(path))
                if expected and digest != expected.lower():
                    raise ChecksumError(f"{algorithm} mismatch: expected {expected}, got {digest}")
                os.replace(tmp_path, path)
                return path
            except ChecksumError as e:
                failures.append(f"{url}: {e}")
                break  # the mirror serves wrong bytes: retrying it will not help
            except (OSError, http.client.HTTPException, DownloadError, ValueError) as e:  # URLError is an OSError
                failures.append(f"{url} (attempt {attempt}/{attempts}): {e}")
                if attempt < attempts:
                    time.sleep(backoff * attempt)
            finally:
                if os.path.exists(tmp_path):
                    os.remove(tmp_path)
    raise DownloadError(f"could not download {os.path.basename(path)} from any mirror:\n  "
                        + "\n  ".join(failures))
