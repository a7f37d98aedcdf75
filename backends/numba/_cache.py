"""The numba backend's on-disk kernel cache, and dropping it when the kernels' sources change.

numba keys a cached function by its own source file only. A kernel that calls (and so compiles into itself) a
function or intrinsic of another module keeps the callee's old code after that module changes: after an edit or a
``git pull`` that touched ``blocked/conv.py`` but not ``blocked/chain.py``, the cached pair kernel would still run
the old ``group_tiles`` (wrong results, or a crash where a signature changed). So at import the backend hashes all of
its sources and, where the hash differs from the one stamped in a cache directory, deletes that directory family's
cached kernels (``*.nbi`` / ``*.nbc``) first: they recompile on first use, as on a fresh clone.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent
STAMP = "kernel_sources.sha1"


def _sources(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def _subpath(d: Path) -> str:
    """numba's directory for the sources of ``d`` under a user cache root (the directory's name and the SHA-1 of its
    absolute path: ``UserProvidedCacheLocator.get_suitable_cache_subpath``)."""
    s = os.path.abspath(d)
    return f"{os.path.basename(s)}_{hashlib.sha1(s.encode()).hexdigest()}"


def cache_dirs(root: Path = ROOT) -> list[list[Path]]:
    """Per place numba may keep this backend's kernels, the cache directory of each package directory: next to the
    sources (``__pycache__``), or under ``NUMBA_CACHE_DIR`` where it is set; else also numba's user-wide cache (where
    the source tree is not writable)."""
    from numba.core import config

    dirs = sorted({p.parent for p in _sources(root)})
    if config.CACHE_DIR:
        return [[Path(config.CACHE_DIR) / _subpath(d) for d in dirs]]
    from numba.misc.appdirs import AppDirs

    user = Path(AppDirs(appname="numba", appauthor=False).user_cache_dir)
    return [[d / "__pycache__" for d in dirs], [user / _subpath(d) for d in dirs]]


def sources_digest(root: Path = ROOT) -> str:
    """SHA-1 over the backend's sources (paths and contents)."""
    h = hashlib.sha1()
    for p in _sources(root):
        h.update(str(p.relative_to(root)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def drop_stale(root: Path = ROOT) -> int:
    """Delete the cached kernels of every place whose stamp is not the current sources' digest, then stamp it; the
    number of files deleted. A place numba has not created is skipped, one that cannot be written left alone
    (numba does not write there either)."""
    digest = sources_digest(root)
    dropped = 0
    for family in cache_dirs(root):
        if not family[0].is_dir():  # nothing cached there (numba creates it when it first writes a kernel)
            continue
        stamp = family[0] / STAMP
        try:
            if stamp.read_text() == digest:
                continue
        except OSError:
            pass
        for d in family:
            for f in (*d.glob("*.nbi"), *d.glob("*.nbc")):
                try:
                    f.unlink()
                    dropped += 1
                except OSError:  # another process dropped it first
                    pass
        try:
            tmp = family[0] / f"{STAMP}.{os.getpid()}"
            tmp.write_text(digest)
            tmp.replace(stamp)  # atomic: a process reading the stamp sees the old or the new one
        except OSError:
            pass
    return dropped
