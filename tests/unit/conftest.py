"""Unit-test fixtures: ELF files built from C by scripts/build_fixtures.sh, and a command runner."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session", autouse=True)
def _private_caches(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Unit tests neither read nor write the user's symbol cache, nor ask the user's debuginfod servers."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        for name in ("DEBUGINFOD_URLS", "DEBUGINFOD_CACHE_PATH"):
            mp.delenv(name, raising=False)
        yield


@pytest.fixture(scope="session")
def fx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ELF fixtures of scripts/build_fixtures.sh, built once per test run."""
    out = tmp_path_factory.mktemp("elf")
    subprocess.run(["bash", str(ROOT / "scripts" / "build_fixtures.sh"), str(out)], check=True)
    return out


def run(*args: str | Path) -> str:
    """A command's stdout; raises when it fails."""
    return subprocess.run([str(a) for a in args], check=True, capture_output=True, text=True).stdout


def nm_addr(path: Path, name: str) -> int:
    """The value of symbol ``name`` in ``path`` (``nm``)."""
    for line in run("nm", path).splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == name:
            return int(parts[0], 16)
    raise AssertionError(f"{name} not in nm {path}")
