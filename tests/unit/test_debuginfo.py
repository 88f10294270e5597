"""Separate debug info: build-id and debuglink layouts, user dirs first, CRC and build-id checks,
MiniDebugInfo made the way Fedora makes it, and debuginfod against a real ``debuginfod`` server."""

from __future__ import annotations

import http.server
import os
import shutil
import socket
import struct
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.conftest import nm_addr, run
from tests.unit.symbolize_helpers import (
    BASE,
    build_id_path,
    fake_process,
    frames_of,
    minidebuginfo_binary,
    names_of,
    place,
    renamed_debug,
    with_debuglink,
)
from unwind.debuginfo import (
    DebugCandidate,
    DebuginfodClient,
    DebugSource,
    SymbolSources,
    debug_candidates,
    default_debuginfod_cache,
    find_debug_file,
    load_symbols,
    read_minidebuginfo,
)
from unwind.elf import ElfFile
from unwind.frame import Reason
from unwind.symbolizer import Symbolizer

NO_NETWORK = {"debuginfod": False, "cache": False}


@pytest.fixture(scope="module")
def probes(fx: Path) -> list[int]:
    """ELF vaddrs inside static_helper (only in .symtab) and leaf_work, the same in every prog copy."""
    return [nm_addr(fx / "prog", "static_helper") + 1, nm_addr(fx / "prog", "leaf_work") + 2]


# -- where debug files are looked for ---------------------------------------------------------------


def test_candidate_order_user_dirs_first(fx: Path) -> None:
    with ElfFile.open(fx / "prog_linked") as elf:
        assert elf.build_id is not None
        hexid = elf.build_id.hex()
        got = debug_candidates(elf, "/opt/app/bin/prog", ["/u1", "/u2"], ["/usr/lib/debug"])
    bid = f".build-id/{hexid[:2]}/{hexid[2:]}.debug"
    b, d = DebugSource.BUILD_ID, DebugSource.DEBUGLINK
    assert got == [
        DebugCandidate(f"/u1/{bid}", b),
        DebugCandidate("/u1/opt/app/bin/prog.debug", d),
        DebugCandidate("/u1/prog.debug", d),
        DebugCandidate(f"/u2/{bid}", b),
        DebugCandidate("/u2/opt/app/bin/prog.debug", d),
        DebugCandidate("/u2/prog.debug", d),
        DebugCandidate(f"/usr/lib/debug/{bid}", b),
        DebugCandidate("/opt/app/bin/prog.debug", d),
        DebugCandidate("/opt/app/bin/.debug/prog.debug", d),
        DebugCandidate("/usr/lib/debug/opt/app/bin/prog.debug", d),
    ]


def test_no_debuglink_candidates_beside_a_pathless_image(fx: Path) -> None:
    with ElfFile.open(fx / "prog_linked") as elf:
        got = debug_candidates(elf, "[vdso]", [], ["/usr/lib/debug"])
    assert [c.source for c in got] == [DebugSource.BUILD_ID]


def test_damaged_debug_file_leaves_the_binary_symbols(fx: Path, tmp_path: Path) -> None:
    debug = build_id_path(tmp_path / "d", fx / "libfix_stripped.so")
    debug.parent.mkdir(parents=True)
    run("objcopy", "--only-keep-debug", fx / "libfix.so", debug)
    with ElfFile.open(debug) as elf:
        symtab = next(s for s in elf.sections if s.name == ".symtab")
    data = bytearray(debug.read_bytes())
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    struct.pack_into("<Q", data, shoff + 64 * symtab.index + 56, 23)  # sh_entsize: not an Elf64_Sym
    debug.write_bytes(bytes(data))
    vaddrs = [nm_addr(fx / "libfix.so", n) + 1 for n in ("fixlib_exported", "fixlib_local")]
    frames = frames_of(
        fx / "libfix_stripped.so", tmp_path, vaddrs, debug_dirs=[str(tmp_path / "d")], **NO_NETWORK
    )
    assert [f.name for f in frames] == ["fixlib_exported", None]  # .dynsym still names what it has
    assert frames[1].unknown is Reason.NO_SYMBOL


def test_build_id_layout_user_dirs_before_defaults(fx: Path, tmp_path: Path, probes: list[int]) -> None:
    exe = fx / "prog_stripped"
    u1, u2, default = tmp_path / "u1", tmp_path / "u2", tmp_path / "default"
    renamed_debug(fx / "prog.debug", place(fx / "prog.debug", build_id_path(u1, exe)), "first_helper")
    renamed_debug(fx / "prog.debug", place(fx / "prog.debug", build_id_path(u2, exe)), "second_helper")
    place(fx / "prog.debug", build_id_path(default, exe))
    opts = {**NO_NETWORK, "default_debug_dirs": [str(default)]}
    assert names_of(exe, tmp_path, probes, debug_dirs=[str(u1), str(u2)], **opts) == [
        "first_helper",
        "leaf_work",
    ]
    assert names_of(exe, tmp_path, probes, debug_dirs=[str(u2), str(u1)], **opts)[0] == "second_helper"
    assert names_of(exe, tmp_path, probes, **opts)[0] == "static_helper"  # the default dir alone
    assert names_of(exe, tmp_path, probes, **NO_NETWORK, default_debug_dirs=[]) == [None, None]


def test_build_id_layout_checks_the_build_id(fx: Path, tmp_path: Path, probes: list[int]) -> None:
    # Another program's debug file under this build-id is not used.
    gcc_debug = tmp_path / "other.debug"
    run("objcopy", "--only-keep-debug", fx / "prog_nopie", gcc_debug)
    d = tmp_path / "d"
    place(gcc_debug, build_id_path(d, fx / "prog_stripped"))
    frames = frames_of(fx / "prog_stripped", tmp_path, probes, debug_dirs=[str(d)], **NO_NETWORK)
    assert [f.unknown for f in frames] == [Reason.NO_SYMBOL, Reason.NO_SYMBOL]


def test_debuglink_layouts_in_user_and_default_dirs(fx: Path, tmp_path: Path, probes: list[int]) -> None:
    user_debug = renamed_debug(fx / "prog.debug", tmp_path / "prog.debug", "user_helper")
    bin_dir = tmp_path / "opt" / "bin"
    bin_dir.mkdir(parents=True)
    exe = with_debuglink(fx / "prog_stripped", user_debug, bin_dir / "prog")  # CRC of the renamed copy
    user_debug.unlink()
    u, default = tmp_path / "u", tmp_path / "default"
    opts = {**NO_NETWORK, "default_debug_dirs": [str(default)]}
    # Beside the binary: the original debug file, whose CRC is not the link's: rejected.
    place(fx / "prog.debug", bin_dir / "prog.debug")
    assert names_of(exe, tmp_path, probes, **opts) == [None, None]
    # The user's dir, flat or with the binary's directory under it.
    flat = renamed_debug(fx / "prog.debug", place(fx / "prog.debug", u / "prog.debug"), "user_helper")
    assert names_of(exe, tmp_path, probes, debug_dirs=[str(u)], **opts) == ["user_helper", "leaf_work"]
    nested = u / str(bin_dir).lstrip("/") / "prog.debug"
    place(flat, nested)
    flat.unlink()
    assert names_of(exe, tmp_path, probes, debug_dirs=[str(u)], **opts)[0] == "user_helper"
    # A default dir with the binary's directory under it.
    place(nested, default / str(bin_dir).lstrip("/") / "prog.debug")
    assert names_of(exe, tmp_path, probes, **opts)[0] == "user_helper"


def test_debuglink_crc_mismatch_rejected(fx: Path, tmp_path: Path, probes: list[int]) -> None:
    shutil.copy(fx / "prog_linked", tmp_path / "prog_linked")
    debug = place(fx / "prog.debug", tmp_path / "prog.debug")
    assert names_of(tmp_path / "prog_linked", tmp_path, probes, **NO_NETWORK)[0] == "static_helper"
    with open(debug, "r+b") as f:  # one byte changed, size kept: only the CRC can tell
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))
    assert names_of(tmp_path / "prog_linked", tmp_path, probes, **NO_NETWORK)[0] is None


def test_debuglink_with_another_build_id_rejected(fx: Path, tmp_path: Path, probes: list[int]) -> None:
    other = tmp_path / "prog.debug"
    run("objcopy", "--only-keep-debug", fx / "prog_nopie", other)  # the CRC will match: the id will not
    exe = with_debuglink(fx / "prog_stripped", other, tmp_path / "prog")
    with ElfFile.open(exe) as elf:
        assert find_debug_file(elf, str(exe), default_dirs=()) is None


def test_debuglink_crc_not_recomputed_when_trusted(fx: Path, tmp_path: Path) -> None:
    shutil.copy(fx / "prog_linked", tmp_path / "prog_linked")
    place(fx / "prog.debug", tmp_path / "prog.debug")
    seen: list[str] = []

    def trusted(identity: str) -> bool:
        seen.append(identity)
        return True

    with ElfFile.open(tmp_path / "prog_linked") as elf:
        found = find_debug_file(elf, str(tmp_path / "prog_linked"), default_dirs=(), trusted=trusted)
    assert found is not None
    found.elf.close()
    assert found.source is DebugSource.DEBUGLINK
    assert seen == [found.identity]
    assert found.identity.startswith(f"{tmp_path / 'prog.debug'}\0")


# -- MiniDebugInfo ----------------------------------------------------------------------------------


def test_minidebuginfo_names_resolve(fx: Path, tmp_path: Path, probes: list[int]) -> None:
    exe = minidebuginfo_binary(fx / "prog", tmp_path / "work", tmp_path / "prog_mini")
    with ElfFile.open(exe) as elf:
        assert not elf.has_symtab
        assert elf.section(".gnu_debugdata") is not None
        mini = read_minidebuginfo(elf)
        assert mini is not None
        assert mini.has_symtab
    frames = frames_of(exe, tmp_path, probes, **NO_NETWORK, default_debug_dirs=[])
    assert [f.name for f in frames] == ["static_helper", "leaf_work"]
    assert names_of(fx / "prog_stripped", tmp_path, probes, **NO_NETWORK, default_debug_dirs=[]) == [
        None,
        None,
    ]


def test_minidebuginfo_merged_with_dynsym(fx: Path, tmp_path: Path) -> None:
    # Fedora's recipe leaves out of the MiniDebugInfo what .dynsym already has: both are needed.
    lib = minidebuginfo_binary(fx / "libfix.so", tmp_path / "work", tmp_path / "libfix_mini.so")
    keep = (tmp_path / "work" / "keep_symbols").read_text().split()
    assert "fixlib_local" in keep
    assert "fixlib_exported" not in keep
    vaddrs = [nm_addr(fx / "libfix.so", n) + 1 for n in ("fixlib_local", "fixlib_exported")]
    names = names_of(lib, tmp_path, vaddrs, **NO_NETWORK, default_debug_dirs=[])
    assert names == ["fixlib_local", "fixlib_exported"]


@pytest.mark.parametrize("damage", ["truncated", "not-xz", "not-elf"])
def test_damaged_minidebuginfo_is_ignored(fx: Path, tmp_path: Path, damage: str) -> None:
    xz = tmp_path / "mini.xz"
    if damage == "truncated":
        minidebuginfo_binary(fx / "prog", tmp_path / "work", tmp_path / "ok")
        xz.write_bytes((tmp_path / "work" / "mini_debuginfo.xz").read_bytes()[:-20])
    elif damage == "not-xz":
        xz.write_bytes(b"\xfd7zXZ\0" + b"garbage" * 20)
    else:
        xz.write_bytes(subprocess.run(["xz", "-c"], input=b"not an ELF file", capture_output=True).stdout)
    exe = tmp_path / "prog"
    run("strip", "--strip-all", "-o", exe, fx / "prog")
    run("objcopy", f"--add-section=.gnu_debugdata={xz}", exe)
    with ElfFile.open(exe) as elf:
        assert read_minidebuginfo(elf) is None
    lib_probe = nm_addr(fx / "prog", "static_helper") + 1
    frame = frames_of(exe, tmp_path, [lib_probe], **NO_NETWORK, default_debug_dirs=[])[0]
    assert frame.unknown is Reason.NO_SYMBOL


def test_local_debug_file_preferred_over_minidebuginfo(fx: Path, tmp_path: Path, probes: list[int]) -> None:
    exe = minidebuginfo_binary(fx / "prog", tmp_path / "work", tmp_path / "prog_mini")
    d = tmp_path / "d"
    renamed_debug(fx / "prog.debug", place(fx / "prog.debug", build_id_path(d, exe)), "from_debug_file")
    with ElfFile.open(exe) as elf:
        loaded = load_symbols(elf, str(exe), None, SymbolSources((str(d),), ()))
        assert loaded.source is DebugSource.BUILD_ID
        assert loaded.debug is not None
        loaded.debug.elf.close()
    assert names_of(exe, tmp_path, probes, debug_dirs=[str(d)], **NO_NETWORK)[0] == "from_debug_file"


# -- debuginfod -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DebuginfodServer:
    """A real ``debuginfod`` (elfutils) serving the ELF/DWARF files of one directory on 127.0.0.1."""

    def __init__(self, root: Path, served: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("DEBUGINFOD_")}  # no federation
        self.log = open(root / "debuginfod.log", "wb")  # noqa: SIM115  # closed in stop()
        self.proc = subprocess.Popen(
            ["debuginfod", "-p", str(self.port), "-d", str(root / "debuginfod.sqlite"), "-F",
             "-t", "0", "-g", "0", "-c", "1", str(served)],
            stdout=self.log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip

    def wait_until_serving(self, build_id: bytes, timeout: float = 30.0) -> None:
        """Poll until the server answers 200 for ``build_id`` (it indexes its directory at start)."""
        deadline = time.monotonic() + timeout
        url = f"{self.url}/buildid/{build_id.hex()}/debuginfo"
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"debuginfod exited: {(self.log.name)}"
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise AssertionError(f"debuginfod did not serve {build_id.hex()} within {timeout} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture
def debuginfod_server(fx: Path, tmp_path: Path) -> Iterator[DebuginfodServer]:
    if shutil.which("debuginfod") is None:
        reason = "needs the debuginfod server (Debian package debuginfod; scripts/setup.sh --test)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; under CI=true this test may not skip")
        pytest.skip(reason)
    served = tmp_path / "served"
    place(fx / "prog.debug", served / "prog.debug")
    with ElfFile.open(fx / "prog.debug") as elf:
        assert elf.build_id is not None
        build_id = elf.build_id
    for attempt in range(3):  # the free port may be taken before the server binds it
        server = DebuginfodServer(tmp_path, served)
        try:
            server.wait_until_serving(build_id)
            break
        except AssertionError:
            server.stop()
            if attempt == 2:
                raise
    try:
        yield server
    finally:
        server.stop()


def test_debuginfod_fetch_cache_and_offline(
    fx: Path,
    tmp_path: Path,
    probes: list[int],
    debuginfod_server: DebuginfodServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache_home = tmp_path / "xdg"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache_home))
    monkeypatch.setenv("DEBUGINFOD_URLS", f"http://127.0.0.1:{free_port()} {debuginfod_server.url}")
    exe = fx / "prog_stripped"
    with ElfFile.open(exe) as elf:
        assert elf.build_id is not None
        hexid = elf.build_id.hex()
    # Nothing local: the first server is down (skipped, recorded), the second has the debug file.
    proc_frames = frames_of(exe, tmp_path, probes, default_debug_dirs=[])
    assert [f.name for f in proc_frames] == ["static_helper", "leaf_work"]
    cached = cache_home / "bpfprof" / "debuginfod" / hexid / "debuginfo"
    assert cached.read_bytes() == (fx / "prog.debug").read_bytes()
    assert [p.name for p in cached.parent.iterdir()] == ["debuginfo"]  # no temporary file left
    # Server gone: the cached copy serves, without a network attempt.
    debuginfod_server.stop()
    monkeypatch.setenv("DEBUGINFOD_URLS", debuginfod_server.url)
    t = time.monotonic()
    assert names_of(exe, tmp_path, probes, default_debug_dirs=[], cache=False) == [
        "static_helper",
        "leaf_work",
    ]
    assert time.monotonic() - t < 5


def test_debuginfod_404_is_an_unknown_frame_and_remembered(
    fx: Path, tmp_path: Path, debuginfod_server: DebuginfodServer
) -> None:
    exe = tmp_path / "libfix_stripped.so"  # a build-id the server does not have
    shutil.copy(fx / "libfix_stripped.so", exe)
    vaddr = nm_addr(fx / "libfix.so", "fixlib_local") + 1
    client = DebuginfodClient([debuginfod_server.url], str(tmp_path / "cache"), timeout=5)
    t = time.monotonic()
    frame = frames_of(exe, tmp_path, [vaddr], default_debug_dirs=[], debuginfod=client, cache=False)[0]
    assert time.monotonic() - t < 10
    assert frame.unknown is Reason.NO_SYMBOL
    assert frame.label().startswith("libfix_stripped.so+0x")
    assert client.errors == []  # a 404 is an answer, not an error
    with ElfFile.open(exe) as elf:
        assert elf.build_id is not None
        marker = tmp_path / "cache" / elf.build_id.hex() / "debuginfo"
        assert marker.stat().st_size == 0  # remembered as "nobody has it"
        debuginfod_server.stop()
        assert client.fetch(elf.build_id) is None  # no attempt: the stopped server would be an error
        assert client.errors == []
        os.utime(marker, (time.time() - 3600, time.time() - 3600))  # older than negative_ttl: ask again
        assert client.fetch(elf.build_id) is None
        assert len(client.errors) == 1


def test_debuginfod_unreachable_or_silent_server_is_bounded(
    fx: Path, tmp_path: Path, probes: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    silent = socket.socket()  # accepts connections (backlog) and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        silent_url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        monkeypatch.setenv("DEBUGINFOD_URLS", f"http://127.0.0.1:{free_port()} {silent_url}")
        monkeypatch.setenv("DEBUGINFOD_TIMEOUT", "1")
        proc, pid = fake_process(fx / "prog_stripped", tmp_path)
        t = time.monotonic()
        with Symbolizer(proc=proc, default_debug_dirs=[], cache=False) as sym:
            frames = sym.symbolize_user(pid, [BASE + probes[0]]) + sym.symbolize_user(pid, [BASE + probes[1]])
            warnings = sym.warnings()
        elapsed = time.monotonic() - t
    finally:
        silent.close()
    assert [f.unknown for f in frames] == [Reason.NO_SYMBOL, Reason.NO_SYMBOL]
    assert elapsed < 6  # refused at once, then one DEBUGINFOD_TIMEOUT of silence; each server once
    assert len(warnings) == 2
    assert all("not asked again" in w for w in warnings)


def test_debuginfod_client_records_errors_and_skips_dead_servers(fx: Path, tmp_path: Path) -> None:
    with ElfFile.open(fx / "prog_stripped") as elf:
        build_id = elf.build_id
    assert build_id is not None
    client = DebuginfodClient([f"http://127.0.0.1:{free_port()}"], str(tmp_path / "c"), timeout=2)
    assert client.fetch(build_id) is None
    assert len(client.errors) == 1
    assert "not asked again" in client.errors[0]
    assert client.fetch(build_id) is None
    assert len(client.errors) == 1
    assert not (tmp_path / "c" / build_id.hex()).exists()  # unreachable is not "not found"


def test_debuginfod_refuses_a_file_with_another_build_id(fx: Path, tmp_path: Path) -> None:
    body = (fx / "prog_nopie").read_bytes()  # an ELF, with another build-id

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with ElfFile.open(fx / "prog_stripped") as elf:
            build_id = elf.build_id
        assert build_id is not None
        client = DebuginfodClient([f"http://127.0.0.1:{server.server_port}"], str(tmp_path / "c"))
        assert client.fetch(build_id) is None
        assert "another build-id" in client.errors[0]
        assert list((tmp_path / "c" / build_id.hex()).iterdir()) == []  # nothing stored, no temp file
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_debuginfod_with_unwritable_cache_still_resolves(
    fx: Path,
    tmp_path: Path,
    probes: list[int],
    debuginfod_server: DebuginfodServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(not_a_dir / "sub"))  # root ignores modes; this cannot be made
    monkeypatch.setenv("DEBUGINFOD_URLS", debuginfod_server.url)
    proc, pid = fake_process(fx / "prog_stripped", tmp_path)
    with Symbolizer(proc=proc, default_debug_dirs=[]) as sym:
        names = [sym.symbolize_user(pid, [BASE + p])[0].name for p in probes]
        warnings = sym.warnings()
    assert names == ["static_helper", "leaf_work"]
    assert any("debuginfod cache" in w for w in warnings)
    assert any("symbol cache" in w for w in warnings)


def test_debuginfod_settings_from_environment(tmp_path: Path) -> None:
    assert DebuginfodClient.from_env({"DEBUGINFOD_URLS": "  "}) is None
    client = DebuginfodClient.from_env(
        {
            "DEBUGINFOD_URLS": "http://a/ https://b",
            "DEBUGINFOD_TIMEOUT": "3",
            "DEBUGINFOD_MAXSIZE": "x",
            "HOME": str(tmp_path),
        }
    )
    assert client is not None
    assert client.urls == ("http://a", "https://b")
    assert client.timeout == 3
    assert client.max_size is None
    assert client.cache_dir == str(tmp_path / ".cache" / "bpfprof" / "debuginfod")
    env = {"DEBUGINFOD_CACHE_PATH": "/var/cache/dbg", "XDG_CACHE_HOME": "/x"}
    assert default_debuginfod_cache(env) == "/var/cache/dbg"
    assert default_debuginfod_cache({"XDG_CACHE_HOME": "/x"}) == "/x/bpfprof/debuginfod"
