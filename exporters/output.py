"""Choosing an output format from a file name, and writing a profile to a file atomically."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Callable
from dataclasses import replace
from typing import IO, Any, BinaryIO, NamedTuple, TextIO

from exporters.folded import FoldedOptions, write_folded
from exporters.model import Profile
from exporters.pprof import write_pprof
from exporters.speedscope import write_speedscope
from exporters.svg import SvgOptions, write_svg

Writer = Callable[[Profile, TextIO, FoldedOptions, SvgOptions], None]


class Format(NamedTuple):
    """An output format: the file name endings that select it (lower case) and its writer."""

    extensions: tuple[str, ...]
    writer: Writer


def _write_folded(profile: Profile, stream: TextIO, folded: FoldedOptions, svg: SvgOptions) -> None:
    write_folded(profile, stream, folded)


def _write_speedscope(profile: Profile, stream: TextIO, folded: FoldedOptions, svg: SvgOptions) -> None:
    write_speedscope(profile, stream)


def _write_svg(profile: Profile, stream: TextIO, folded: FoldedOptions, svg: SvgOptions) -> None:
    write_svg(profile, stream, svg)


def _write_pprof(profile: Profile, stream: BinaryIO, folded: FoldedOptions, svg: SvgOptions) -> None:
    write_pprof(profile, stream)  # both weights are in the file: samples and period


FORMATS: dict[str, Format] = {
    "folded": Format((".folded", ".txt"), _write_folded),
    "speedscope": Format((".speedscope.json", ".json"), _write_speedscope),
    "svg": Format((".svg",), _write_svg),
    "pprof": Format((".pb.gz", ".pprof"), _write_pprof),  # type: ignore[arg-type]  # a bytes stream
}
# Formats whose writer gets a binary stream (write_atomic(binary=True)).
BINARY_FORMATS = frozenset({"pprof"})


def _known_extensions() -> str:
    exts = [ext for fmt in FORMATS.values() for ext in fmt.extensions]
    return ", ".join(exts[:-1]) + " or " + exts[-1]


def _check_format(name: str) -> str:
    if name not in FORMATS:
        raise ValueError(f"unknown output format {name!r}: -f takes one of {', '.join(FORMATS)}.")
    return name


def format_for_path(path: str | os.PathLike[str], explicit: str | None = None) -> str:
    """The format name for an output path: ``explicit`` (``-f``) when given, else from the extension.

    Extensions match case-insensitively, the longest first (``.speedscope.json`` before ``.json``).
    An unknown ``explicit`` name or an unknown extension raises ValueError with a one-sentence message.
    """
    if explicit is not None:
        return _check_format(explicit)
    name = os.path.basename(os.fspath(path)).lower()
    candidates = sorted(
        ((ext, fmt) for fmt, f in FORMATS.items() for ext in f.extensions), key=lambda c: -len(c[0])
    )
    for ext, fmt in candidates:
        if name.endswith(ext):
            return fmt
    raise ValueError(
        f"cannot tell the output format of {os.fspath(path)!r} from its extension: name it "
        f"{_known_extensions()}, or choose the format with -f ({', '.join(FORMATS)})."
    )


def _umask() -> int:
    """The process umask, read without changing it where Linux shows it (``Umask:`` in /proc/self/status)."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)  # fallback: the classic set-and-restore (briefly process-wide)
    os.umask(mask)
    return mask


def _final_mode(path: str) -> int:
    """The mode the written file gets: an existing file's mode, else 0666 less the umask (as open(2))."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~_umask()


def write_atomic(
    path: str | os.PathLike[str], write_fn: Callable[[Any], None], *, binary: bool = False
) -> None:
    """Write a UTF-8 text file (bytes with ``binary``) so that PATH holds its old content or all the new.

    ``write_fn`` writes to a temporary file in the same directory, which is fsynced and renamed over
    PATH (``os.replace``). On any failure, KeyboardInterrupt included, the temporary file is removed and
    the exception propagates unchanged: an OSError (PermissionError, FileNotFoundError, ENOSPC...)
    carries the reason to show as "cannot write PATH: reason". Characters UTF-8 cannot encode (lone
    surrogates) are written as ``?`` rather than failing late.
    """
    target = os.fspath(path)
    directory = os.path.dirname(target) or "."
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".tmp", dir=directory)
    if binary:
        stream: IO[Any] = os.fdopen(fd, "wb")
    else:
        stream = os.fdopen(fd, "w", encoding="utf-8", errors="replace", newline="\n")
    try:
        write_fn(stream)
        stream.flush()
        os.fchmod(stream.fileno(), _final_mode(target))
        os.fsync(stream.fileno())
        stream.close()
        os.replace(tmp, target)
    except BaseException:
        # Closing may fail again (it flushes); that must not replace the exception being raised.
        with contextlib.suppress(OSError):
            stream.close()
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    # Make the rename itself durable; some file systems cannot fsync a directory, which is harmless.
    with contextlib.suppress(OSError):
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def write_atomic_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """``write_atomic`` of bytes (a saved recording): PATH holds its old content or all of ``data``."""
    write_atomic(path, lambda stream: stream.write(data), binary=True)


def write_profile(
    profile: Profile,
    path: str | os.PathLike[str],
    fmt: str,
    *,
    folded_options: FoldedOptions | None = None,
    svg_options: SvgOptions | None = None,
    weight: str | None = None,
) -> None:
    """Write a profile to PATH atomically in format ``fmt`` (a name of FORMATS, see format_for_path).

    ``weight`` (``samples`` or ``period``) overrides each format's own: samples for folded and SVG,
    period for speedscope.
    """
    name = _check_format(fmt)
    writer = FORMATS[name].writer
    folded = folded_options or FoldedOptions()
    svg = svg_options or SvgOptions()
    if weight is not None:
        folded, svg = replace(folded, weight=weight), replace(svg, weight=weight)
        if name == "speedscope":
            by = weight
            write_atomic(path, lambda stream: write_speedscope(profile, stream, weight=by))
            return
    write_atomic(path, lambda stream: writer(profile, stream, folded, svg), binary=name in BINARY_FORMATS)
