"""Files and folders written whole or not at all: a process killed while writing leaves the previous version
intact, and only hidden litter that the next write removes."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write `text` to a hidden temporary file beside `path`, then rename it over `path`.

    The rename is atomic on one filesystem, so a reader (or a rerun after a kill) sees the old file or the
    new one, never half of one. A kill before the rename leaves only the hidden `.<name>.tmp` behind.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # only still there when writing or renaming failed
    return path


# Folders and files others must read (a server running as another user): rwxr-xr-x and rw-r--r--.
DIR_MODE, FILE_MODE = 0o755, 0o644
_RENAME_EXCHANGE = 2  # renameat2(2) flag: swap two paths in one atomic step
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap the paths `a` and `b` atomically (Linux renameat2); False where the kernel or libc cannot."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    done = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return done == 0


def make_readable(folder: Path) -> None:
    """Folders 0755 and files 0644 below and at `folder` (temporary folders are made 0700)."""
    for root, _, files in os.walk(folder):
        os.chmod(root, DIR_MODE)
        for name in files:
            os.chmod(os.path.join(root, name), FILE_MODE)


def staging_dir(target: Path) -> Path:
    """A new hidden folder beside `target` to build its next version in (`.<name>.tmp-<random>`)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))


def remove_staging_litter(target: Path) -> None:
    """Remove what killed runs left beside `target`: staged or replaced versions of it."""
    if not target.parent.is_dir():
        return
    # Also the `.<name>.<8 random characters>` folders that versions before this one left.
    litter = re.compile(rf"\.{re.escape(target.name)}\.(tmp-.+|old-\d+|[a-z0-9_]{{8}})")
    for path in target.parent.glob(f".{target.name}.*"):
        if litter.fullmatch(path.name) and path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)


def replace_dir(staged: Path, target: Path) -> Path:
    """Put the folder `staged` in place of `target` whole: a reader sees the old folder or the new one.

    One atomic exchange where the kernel offers it (then the old version is removed); elsewhere two
    renames, between which `target` is briefly missing. Either way a kill leaves only hidden litter,
    which `remove_staging_litter` clears.

    A mount point cannot be renamed (SageMaker's local mode bind-mounts /opt/ml/model): its contents are
    replaced instead, not atomically (the job's model is read only after its process ends)."""
    make_readable(staged)
    if not target.exists():
        os.replace(staged, target)
        return target
    if os.path.ismount(target):
        return _replace_contents(staged, target)
    if _exchange(staged, target):
        shutil.rmtree(staged, ignore_errors=True)  # holds the old version now
        return target
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    os.replace(target, old)
    os.replace(staged, target)
    shutil.rmtree(old, ignore_errors=True)
    return target


def _replace_contents(staged: Path, target: Path) -> Path:
    """Empty `target`, then move what `staged` holds into it (copied where they are different filesystems)."""
    for entry in target.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    for entry in staged.iterdir():
        shutil.move(str(entry), str(target / entry.name))
    shutil.rmtree(staged, ignore_errors=True)
    make_readable(target)
    return target
