"""Shared test set-up: the `bpf` marker's skip-or-fail rule and the golden-file update flag."""

from __future__ import annotations

import ctypes.util
import os
from pathlib import Path

import pytest
from hypothesis import settings

GOLDEN_DIR = Path(__file__).parent / "golden"
FIXTURES_DIR = Path(__file__).parent / "fixtures"

# The fuzz tests (the parsers' @given tests) have a fixed budget: each its own max_examples (100 where it
# sets none), derandomized so every run tries the same inputs, with no deadline and no example database.
# Profile "ci" is the default; `pytest --hypothesis-profile=explore` draws new random inputs instead.
settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True)
settings.register_profile("explore", deadline=None)
settings.load_profile("ci")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", help="rewrite golden files from current output")


def bpf_unavailable_reason() -> str | None:
    """Why BPF tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "BPF tests need root"
    if not Path("/sys/kernel/btf/vmlinux").exists():
        return "BPF tests need kernel BTF (/sys/kernel/btf/vmlinux)"
    if not (ctypes.util.find_library("bpf") or Path("/usr/lib/x86_64-linux-gnu/libbpf.so.1").exists()):
        return "BPF tests need libbpf.so.1 (Debian package libbpf1)"
    return None


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("bpf") is None:
        return
    reason = bpf_unavailable_reason()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; under CI=true a BPF test may not skip")
    pytest.skip(reason)


@pytest.fixture
def golden(request: pytest.FixtureRequest):
    """Compare text against tests/golden/NAME, or rewrite it with --update-golden."""
    update = request.config.getoption("--update-golden")

    def check(name: str, text: str) -> None:
        path = GOLDEN_DIR / name
        if update or not path.exists():
            if not update and os.environ.get("CI") == "true":
                pytest.fail(f"golden file {name} is missing")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        assert text == path.read_text(), (
            f"output differs from golden file {name} (--update-golden rewrites it)"
        )

    return check
