"""The files a command writes, checked before any work starts (:func:`check_outputs`).

Every output of ``train`` (``--save``, ``--checkpoint``, ``--plot``) and ``predict``
(``--output``) is checked up front, so that a run never ends by failing to write its result:
the directory must exist and take a new file, two outputs must not be one file, an existing
file is replaced only when asked (``--overwrite``; ``--resume`` for the checkpoint it resumes
from), and a plot must name a format matplotlib writes. Each refusal is a
:class:`~arrayprop.cli.args.UsageError`, one line naming the flag and the path.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from arrayprop.cli.args import UsageError

__all__ = ["PLOT_FORMATS", "Output", "check_outputs", "expand", "write_atomic"]

#: What ``--plot`` writes, by extension: the formats matplotlib's Agg canvas writes without
#: anything else installed (pgf needs LaTeX; raw and rgba are not image files).
PLOT_FORMATS = ("png", "pdf", "svg", "svgz", "eps", "ps", "jpg", "jpeg", "tif", "tiff", "webp")


@dataclass(frozen=True)
class Output:
    """One file a command will write.

    Attributes
    ----------
    flag : str
        The option naming it, for messages (``"--save"``).
    path : str
        As given (``~`` is expanded by :func:`check_outputs`).
    may_replace : bool
        Whether an existing file there may be replaced (``--overwrite``, or ``--resume`` for
        the checkpoint).
    suffixes : tuple of str
        The extensions allowed (lower case, without the dot); empty for any.
    hint : str
        Said when the file exists and may not be replaced: how to allow it.
    """

    flag: str
    path: str
    may_replace: bool = False
    suffixes: tuple[str, ...] = ()
    hint: str = "pass --overwrite to replace it"


def expand(path: str) -> str:
    """``path`` with a leading ``~`` expanded (the shell leaves ``--save=~/m.npz`` alone)."""
    return os.path.expanduser(path)


def check_outputs(outputs: list[Output]) -> None:
    """Refuse, before any work, outputs that could not be written or would destroy a file.

    Raises
    ------
    UsageError
        The first problem found: a missing directory, a path that is a directory, an unknown
        extension, two outputs naming one file, an existing file without permission to replace
        it, or a directory where a new file cannot be created (read-only, no permission).
    """
    seen: dict[Path, str] = {}
    for out in outputs:
        path = Path(expand(out.path))
        where = f"{out.flag} {out.path}"
        if out.suffixes:
            ext = path.suffix[1:].lower()
            if ext not in out.suffixes:
                shown = f"'.{ext}'" if ext else "no extension"
                raise UsageError(
                    f"{where}: {shown} is not a format it writes; end the name in one of "
                    + ", ".join(f".{s}" for s in out.suffixes)
                )
        parent = path.parent
        if not parent.is_dir():
            raise UsageError(f"{where}: directory {str(parent)!r} does not exist")
        if path.is_dir():
            raise UsageError(f"{where}: is a directory")
        key = path.resolve()
        if key in seen:
            raise UsageError(
                f"{where}: {seen[key]} writes the same file; give each output its own path"
            )
        seen[key] = out.flag
        if path.exists() and not out.may_replace:
            raise UsageError(f"{where}: the file exists; {out.hint}")
        _probe(parent, where)


def _probe(directory: Path, where: str) -> None:
    """Create and remove a file in ``directory``: the one test of writability that holds for
    every user, file system and mount (``os.access`` is always true for root)."""
    try:
        fd, name = tempfile.mkstemp(dir=directory, prefix=".arrayprop-probe-")
    except OSError as exc:
        raise UsageError(
            f"{where}: cannot create a file in {str(directory)!r} ({exc.strerror or exc})"
        ) from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(name)


def write_atomic(path: str, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write(file)`` on a temporary file next to ``path`` and rename it onto ``path``:
    an interrupted write never leaves a truncated file, nor destroys the previous one."""
    target = Path(expand(path))
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
