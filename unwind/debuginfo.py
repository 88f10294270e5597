"""Separate debug information of stripped ELF files: where it is, whether it matches, how to fetch it.

Local search order (GDB's, see "Separate Debug Files" in the GDB manual, with the user's directories
first), for a binary at ``DIR/NAME`` with build-id ``xxrest`` and ``.gnu_debuglink`` ``LINK``:

1. each user directory ``D``:  ``D/.build-id/xx/rest.debug``, ``D/DIR/LINK``, ``D/LINK``
2. each default directory:     ``/usr/lib/debug/.build-id/xx/rest.debug``
3. beside the binary:          ``DIR/LINK``, ``DIR/.debug/LINK``
4. each default directory:     ``/usr/lib/debug/DIR/LINK``

A file found by build-id must carry that build-id; one found by debuglink must have the CRC-32 the link
records (and, if it has a build-id, the binary's). Either must have a ``.symtab``. Besides local files:
MiniDebugInfo (``.gnu_debugdata``: an xz-compressed ELF holding a ``.symtab``, as Fedora ships) and a
debuginfod client (``DEBUGINFOD_URLS``, the elfutils protocol and cache layout). Nothing here raises
for a missing, damaged or mismatched file: it is skipped, or recorded in ``DebuginfodClient.errors``.
"""

from __future__ import annotations

import contextlib
import http.client
import lzma
import mmap
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import IO

from unwind.elf import ElfError, ElfFile
from unwind.symcache import SymbolCache, table_key
from unwind.symtab import SymbolTable

DEFAULT_DEBUG_DIRS = ("/usr/lib/debug",)
# A decompressed .gnu_debugdata larger than this is refused (a MiniDebugInfo is a few hundred KiB).
MAX_MINIDEBUGINFO = 256 << 20
# debuginfod defaults. elfutils waits 90 s for a server to start answering; a profiler prints its
# report interactively, so it waits less (DEBUGINFOD_TIMEOUT overrides, as for elfutils).
DEFAULT_TIMEOUT = 10.0
# How long a "no server has it" answer is believed (elfutils' default cache_miss_s).
NEGATIVE_TTL = 600.0
_CHUNK = 1 << 20
_ERRORS = (ElfError, OSError, ValueError)


class DebugSource(Enum):
    """Where the symbols of a stripped binary came from."""

    BUILD_ID = "build-id directory"
    DEBUGLINK = ".gnu_debuglink"
    DEBUGINFOD = "debuginfod"
    MINIDEBUGINFO = ".gnu_debugdata"


@dataclass(frozen=True, slots=True)
class DebugCandidate:
    """A path where a separate debug file may be, and the rule that put it there."""

    path: str
    source: DebugSource


@dataclass(eq=False, slots=True)
class DebugFile:
    """An opened, checked separate debug file. ``elf`` belongs to the caller (close it).

    ``identity`` names this version of the file (path, device, inode, size, mtime): a cache key part.
    """

    elf: ElfFile
    path: str
    source: DebugSource
    identity: str


def file_identity(path: str, st: os.stat_result) -> str:
    """A string naming one version of a file: its path, device, inode, size and mtime (ns)."""
    return f"{path}\0{st.st_dev}\0{st.st_ino}\0{st.st_size}\0{st.st_mtime_ns}"


def debug_candidates(
    elf: ElfFile,
    path: str,
    debug_dirs: Sequence[str] = (),
    default_dirs: Sequence[str] = DEFAULT_DEBUG_DIRS,
) -> list[DebugCandidate]:
    """The places to look for the debug file of ``elf`` (mapped from ``path``), best first; no I/O.

    ``debug_dirs`` (the user's) come before ``default_dirs``; see the module docstring for the order.
    """
    build_id = elf.build_id
    try:
        link = elf.debuglink
    except ElfError:
        link = None
    name = link.name if link is not None and link.name and "/" not in link.name else None
    here = os.path.dirname(path)
    out: list[DebugCandidate] = []

    def by_build_id(d: str) -> None:
        if build_id is not None and len(build_id) >= 2:
            hexid = build_id.hex()
            out.append(
                DebugCandidate(
                    os.path.join(d, ".build-id", hexid[:2], hexid[2:] + ".debug"), DebugSource.BUILD_ID
                )
            )

    def by_link(*parts: str) -> None:
        if name is not None:
            out.append(DebugCandidate(os.path.join(*parts, name), DebugSource.DEBUGLINK))

    for d in debug_dirs:
        by_build_id(d)
        by_link(d, here.lstrip("/"))
        by_link(d)
    for d in default_dirs:
        by_build_id(d)
    if os.path.isabs(here):  # not for "[vdso]" or a relative name: no directory of its own
        by_link(here)
        by_link(here, ".debug")
        for d in default_dirs:
            by_link(d, here.lstrip("/"))
    unique: dict[str, DebugCandidate] = {}
    for c in out:
        unique.setdefault(os.path.normpath(c.path), c)
    return list(unique.values())


def find_debug_file(
    elf: ElfFile,
    path: str,
    debug_dirs: Sequence[str] = (),
    *,
    default_dirs: Sequence[str] = DEFAULT_DEBUG_DIRS,
    trusted: Callable[[str], bool] | None = None,
) -> DebugFile | None:
    """The first valid separate debug file of ``elf`` (mapped from ``path``), opened; None if none is.

    ``trusted(identity)`` may say a debuglink candidate was checked before (its CRC-32, a read of the
    whole file, is then not recomputed). The caller owns the returned ``DebugFile.elf``.
    """
    try:
        link = elf.debuglink
    except ElfError:
        link = None
    build_id = elf.build_id
    for cand in debug_candidates(elf, path, debug_dirs, default_dirs):
        try:
            fd = os.open(cand.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            st = os.fstat(fd)
            identity = file_identity(cand.path, st)
            debug = ElfFile.from_fd(fd)
        except _ERRORS:
            os.close(fd)
            continue
        try:
            ok = debug.has_symtab
            if ok and cand.source is DebugSource.BUILD_ID:
                ok = debug.build_id == build_id
            elif ok:
                assert link is not None
                other = debug.build_id
                ok = (other is None or build_id is None or other == build_id) and (
                    (trusted is not None and trusted(identity)) or _fd_crc32(fd) == link.crc
                )
        except _ERRORS:
            ok = False
        finally:
            os.close(fd)
        if ok:
            return DebugFile(debug, cand.path, cand.source, identity)
        debug.close()
    return None


def _fd_crc32(fd: int) -> int | None:
    """CRC-32 (zlib's, as ``.gnu_debuglink`` records) of the whole open file, or None if unreadable."""
    try:
        with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as mm:
            return zlib.crc32(mm)
    except (OSError, ValueError):
        return None


def file_crc32(path: str) -> int | None:
    """CRC-32 of the file at ``path`` as ``.gnu_debuglink`` records it, or None if it cannot be read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return _fd_crc32(fd)
    finally:
        os.close(fd)


def read_minidebuginfo(elf: ElfFile) -> ElfFile | None:
    """The ELF inside ``.gnu_debugdata`` (MiniDebugInfo), decompressed in memory; None if absent or bad.

    Its ``.symtab`` holds the function symbols that are not in ``.dynsym`` (see "MiniDebugInfo" in the
    GDB manual); merge both. A damaged, truncated or oversized (> ``MAX_MINIDEBUGINFO``) one is None.
    """
    sec = elf.section(".gnu_debugdata")
    if sec is None or not sec.has_data:
        return None
    try:
        decompressor = lzma.LZMADecompressor()
        data = decompressor.decompress(elf.section_data(sec), max_length=MAX_MINIDEBUGINFO)
        if not decompressor.eof:  # truncated input, or more output than the limit
            return None
        mini = ElfFile.from_bytes(data)
    except (lzma.LZMAError, *_ERRORS):
        return None
    if not mini.has_symtab:
        return None
    return mini


# -- symbols of one binary -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SymbolSources:
    """Where the symbols of stripped binaries are looked for, and where parsed tables are cached.

    ``debug_dirs`` (the user's, e.g. ``--debuginfo-dir``) are searched before ``default_dirs``, each
    with the build-id and the debuglink layouts; ``debuginfod`` is asked last; ``cache`` may be None.
    """

    debug_dirs: tuple[str, ...] = ()
    default_dirs: tuple[str, ...] = DEFAULT_DEBUG_DIRS
    debuginfod: DebuginfodClient | None = None
    cache: SymbolCache | None = None


@dataclass(eq=False, slots=True)
class LoadedSymbols:
    """A binary's symbol table and the separate debug file it came with (``debug.elf``: caller closes).

    ``source`` says where the symbols beyond ``.dynsym`` came from; None when the binary has its own
    ``.symtab`` or nothing was found. ``cached`` is True when the table was read from the cache.
    """

    table: SymbolTable
    debug: DebugFile | None
    source: DebugSource | None
    cached: bool


def load_symbols(elf: ElfFile, path: str, identity: str | None, sources: SymbolSources) -> LoadedSymbols:
    """The function symbols of ``elf`` (mapped from ``path``), from the cache when they are there.

    A binary with a ``.symtab`` is read alone; a stripped one is merged with, in order of preference, a
    local debug file, its MiniDebugInfo, or a debug file from debuginfod (``.dynsym`` alone when none
    exists). The cache key is the build-id, else ``identity`` (see ``file_identity``; None: not cached),
    plus the debug file's identity. Raises ElfError/OSError/ValueError when ``elf`` itself is damaged.
    """
    cache = sources.cache
    build_id = elf.build_id
    debug: DebugFile | None = None
    source: DebugSource | None = None
    has_mini = False
    if elf.has_symtab:
        key_sources: tuple[str, ...] = ("self",)
    else:

        def trusted(debug_identity: str) -> bool:  # a table was made with it: it was checked then
            key = table_key(build_id, identity, ("debug", debug_identity))
            return cache is not None and key is not None and cache.has(key)

        debug = find_debug_file(
            elf, path, sources.debug_dirs, default_dirs=sources.default_dirs, trusted=trusted
        )
        mini = elf.section(".gnu_debugdata")
        has_mini = debug is None and mini is not None and mini.has_data
        if debug is None and not has_mini and sources.debuginfod is not None and build_id:
            debug = _open_fetched(sources.debuginfod, build_id)
        if debug is not None:
            key_sources, source = ("debug", debug.identity), debug.source
        elif has_mini:
            key_sources, source = ("mini",), DebugSource.MINIDEBUGINFO
        else:
            key_sources = ("dynsym",)
    key = table_key(build_id, identity, key_sources) if cache is not None else None
    table = cache.load(key) if cache is not None and key is not None else None
    if table is not None:
        return LoadedSymbols(table, debug, source, cached=True)
    extra = []
    if debug is not None:
        try:
            extra = debug.elf.symbol_parts()
        except _ERRORS:  # a damaged debug file: the binary's own symbols still count
            debug.elf.close()
            debug, source = None, None
            key = table_key(build_id, identity, ("dynsym",)) if cache is not None else None
    elif has_mini:
        try:
            mini_elf = read_minidebuginfo(elf)
            extra = mini_elf.symbol_parts() if mini_elf is not None else []  # names point into its bytes
        except _ERRORS:
            extra = []
    try:
        table = SymbolTable(extra + elf.symbol_parts())
    except BaseException:
        if debug is not None:
            debug.elf.close()
        raise
    if cache is not None and key is not None:
        cache.store(key, table)
    return LoadedSymbols(table, debug, source, cached=False)


def _open_fetched(client: DebuginfodClient, build_id: bytes) -> DebugFile | None:
    """The debug file of ``build_id`` from debuginfod (its cache or a server), opened and checked."""
    path = client.fetch(build_id)
    if path is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        identity = file_identity(path, os.fstat(fd))
        debug = ElfFile.from_fd(fd)
    except _ERRORS:
        return None
    finally:
        os.close(fd)
    try:
        ok = debug.has_symtab and debug.build_id == build_id
    except _ERRORS:
        ok = False
    if not ok:
        debug.close()
        return None
    return DebugFile(debug, path, DebugSource.DEBUGINFOD, identity)


# -- debuginfod ------------------------------------------------------------------------------------


def default_debuginfod_cache(environ: Mapping[str, str] | None = None) -> str:
    """``$DEBUGINFOD_CACHE_PATH`` (shared with elfutils tools), else ``$XDG_CACHE_HOME/bpfprof/debuginfod``
    (``~/.cache`` when XDG_CACHE_HOME is unset or relative)."""
    env = os.environ if environ is None else environ
    if env.get("DEBUGINFOD_CACHE_PATH"):
        return env["DEBUGINFOD_CACHE_PATH"]
    xdg = env.get("XDG_CACHE_HOME", "")
    base = xdg if os.path.isabs(xdg) else os.path.join(env.get("HOME") or os.path.expanduser("~"), ".cache")
    return os.path.join(base, "bpfprof", "debuginfod")


class DebuginfodClient:
    """Fetches debug files by build-id from debuginfod servers into an on-disk cache.

    ``GET {url}/buildid/{hex}/debuginfo`` on each server in order; the first success wins. Files land in
    ``{cache_dir}/{hex}/debuginfo`` (elfutils' layout, so ``DEBUGINFOD_CACHE_PATH`` can be shared with
    gdb), written atomically, and only after they parse as ELF with the asked build-id. A build-id every
    server answered 404 for is remembered for ``negative_ttl`` seconds as an empty file (as elfutils
    does). A server that cannot be reached is not asked again by this client. Nothing raises: problems are
    appended to ``errors`` (one line each). ``timeout`` bounds the wait for a server to connect or send,
    ``max_time`` a whole download, ``max_size`` its size in bytes. Call ``close()`` when done.
    """

    def __init__(
        self,
        urls: Sequence[str],
        cache_dir: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_time: float | None = None,
        max_size: int | None = None,
        negative_ttl: float = NEGATIVE_TTL,
    ) -> None:
        self.urls = tuple(u.rstrip("/") for u in urls if u)
        self.cache_dir = cache_dir
        self.timeout = timeout
        self.max_time = max_time
        self.max_size = max_size
        self.negative_ttl = negative_ttl
        self.errors: list[str] = []
        self._dead: set[str] = set()
        self._scratch: str | None = None  # a private directory when the cache cannot be written
        self._opener = urllib.request.build_opener()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DebuginfodClient | None:
        """A client for ``$DEBUGINFOD_URLS`` (space-separated), or None when it is unset or empty.

        Also reads ``DEBUGINFOD_CACHE_PATH``, ``DEBUGINFOD_TIMEOUT``, ``DEBUGINFOD_MAXTIME`` and
        ``DEBUGINFOD_MAXSIZE`` as elfutils does (bad numbers are ignored).
        """
        env = os.environ if environ is None else environ
        urls = env.get("DEBUGINFOD_URLS", "").split()
        if not urls:
            return None
        return cls(
            urls,
            default_debuginfod_cache(env),
            timeout=_positive(env.get("DEBUGINFOD_TIMEOUT")) or DEFAULT_TIMEOUT,
            max_time=_positive(env.get("DEBUGINFOD_MAXTIME")),
            max_size=int(size) if (size := _positive(env.get("DEBUGINFOD_MAXSIZE"))) else None,
        )

    def close(self) -> None:
        """Remove the private scratch directory, if one was needed (files in use stay readable)."""
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def __enter__(self) -> DebuginfodClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def cached(self, build_id: bytes) -> str | None:
        """The cached debug file of ``build_id``, if the cache has it; no network."""
        path = self._path(self.cache_dir, build_id)
        try:
            if os.stat(path).st_size > 0:
                return path
        except OSError:
            pass
        if self._scratch is not None and os.path.exists(self._path(self._scratch, build_id)):
            return self._path(self._scratch, build_id)
        return None

    def fetch(self, build_id: bytes) -> str | None:
        """The path of the debug file of ``build_id``: from the cache, else downloaded; None if no server
        has it (or none answered). Bounded in time by ``timeout`` per server (``max_time`` per download)."""
        if not build_id:
            return None
        found = self.cached(build_id)
        if found is not None:
            return found
        dest = self._path(self.cache_dir, build_id)
        try:
            st = os.stat(dest)
            if st.st_size == 0 and time.time() - st.st_mtime < self.negative_ttl:
                return None  # every server said 404 not long ago
        except OSError:
            pass
        hexid = build_id.hex()
        answered_all = True
        for url in self.urls:
            if url in self._dead:
                answered_all = False
                continue
            got = self._download(url, hexid, build_id)
            if isinstance(got, str):
                return got
            answered_all &= got
        if answered_all and self.urls:
            self._store_negative(dest)
        return None

    @staticmethod
    def _path(root: str, build_id: bytes) -> str:
        return os.path.join(root, build_id.hex(), "debuginfo")

    def _download(self, url: str, hexid: str, build_id: bytes) -> str | bool:
        """The stored file's path; else True when the server answered that it has none (404), False
        when it failed (recorded in ``errors``; an unreachable server is marked dead)."""
        request = urllib.request.Request(
            f"{url}/buildid/{hexid}/debuginfo", headers={"User-Agent": "bpfprof"}
        )
        if self.max_size is not None:
            request.add_header("X-DEBUGINFOD-MAXSIZE", str(self.max_size))
        start = time.monotonic()
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                length = response.headers.get("Content-Length")
                if self.max_size is not None and length is not None and int(length) > self.max_size:
                    self.errors.append(
                        f"{url}: debug file of {hexid} is {length} bytes, over DEBUGINFOD_MAXSIZE"
                    )
                    return True
                return self._store(response, url, hexid, build_id, start)
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return True
            self.errors.append(f"{url}: HTTP {e.code} for the debug file of {hexid}")
            return False
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
            reason = e.reason if isinstance(e, urllib.error.URLError) else e
            self.errors.append(f"{url}: cannot fetch the debug file of {hexid} ({reason}); not asked again")
            self._dead.add(url)
            return False

    def _store(self, response: IO[bytes], url: str, hexid: str, build_id: bytes, start: float) -> str | bool:
        """Stream ``response`` to a temporary file, check it is ELF with ``build_id``, rename it in place."""
        root = self.cache_dir
        try:
            os.makedirs(os.path.join(root, hexid), exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".debuginfo.", suffix=".tmp", dir=os.path.join(root, hexid))
        except OSError:
            root = self._scratch_dir()
            os.makedirs(os.path.join(root, hexid), exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".debuginfo.", suffix=".tmp", dir=os.path.join(root, hexid))
        try:
            size = 0
            with os.fdopen(fd, "wb") as out:
                while chunk := response.read(_CHUNK):
                    size += len(chunk)
                    if self.max_size is not None and size > self.max_size:
                        raise _Refused("over DEBUGINFOD_MAXSIZE")
                    if self.max_time is not None and time.monotonic() - start > self.max_time:
                        raise _Refused("over DEBUGINFOD_MAXTIME")
                    out.write(chunk)
            try:
                with ElfFile.open(tmp) as elf:
                    if elf.build_id != build_id:
                        raise _Refused("it has another build-id")
            except ElfError as e:
                raise _Refused(f"it is not an ELF file ({e})") from e
            dest = self._path(root, build_id)
            os.replace(tmp, dest)
            return dest
        except _Refused as e:
            self.errors.append(f"{url}: the debug file of {hexid} was refused: {e}")
            return False
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def _scratch_dir(self) -> str:
        if self._scratch is None:
            self._scratch = tempfile.mkdtemp(prefix="bpfprof-debuginfod-")
            self.errors.append(
                f"cannot write the debuginfod cache {self.cache_dir}; downloads are kept for this run only"
            )
        return self._scratch

    def _store_negative(self, dest: str) -> None:
        """An empty ``debuginfo`` file: 'no server has it', believed for ``negative_ttl`` seconds."""
        try:
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".debuginfo.", suffix=".tmp", dir=os.path.dirname(dest))
            os.close(fd)
            os.replace(tmp, dest)
        except OSError:
            pass  # not remembered: only costs another query next time


class _Refused(Exception):
    """A downloaded file that is not stored (too big, too slow, not the ELF asked for)."""


def _positive(text: str | None) -> float | None:
    """A positive number from an environment variable, or None (unset, empty, not a number, <= 0)."""
    try:
        value = float(text) if text else None
    except ValueError:
        return None
    return value if value is not None and value > 0 else None
