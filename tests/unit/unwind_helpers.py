"""Helpers of the CFI and unwinder tests: recorded snapshots, an offline resolver, readelf's CFI rows."""

from __future__ import annotations

import bisect
import importlib.util
import re
import shutil
import sys
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from tests.unit.conftest import ROOT, run
from unwind import cfi
from unwind.cfi import UnwindTable, build_unwind_table
from unwind.debuginfo import find_debug_file
from unwind.elf import ElfFile
from unwind.maps import Mapping, parse_maps
from unwind.symtab import SymbolTable

SNAPSHOTS = ROOT / "tests" / "fixtures" / "snapshots"
HAVE_GDB = shutil.which("gdb") is not None


def record_snapshot_module() -> ModuleType:
    """scripts/record_snapshot.py, imported from its path (scripts/ is not a package)."""
    name = "bpfprof_record_snapshot"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / "record_snapshot.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


class OfflineResolver:
    """``resolve`` for ``unwind.unwinder.unwind`` over recorded maps, without the process.

    Module files are opened by their recorded path, or by ``files[path]`` (None: unavailable, so a pc
    there resolves to nothing); the vDSO comes from ``vdso`` bytes. ``names(ips)`` symbolizes a stack
    (every ip but the first at ``ip - 1``), using a separate debug file found by build-id if stripped.
    """

    def __init__(
        self,
        maps_text: str,
        files: MappingABC[str, Path | None] | None = None,
        vdso: bytes | None = None,
        *,
        cache_dir: str | None = None,
    ) -> None:
        self.maps = [m for m in parse_maps(maps_text) if m.is_exec]
        self.starts = [m.start for m in self.maps]
        self.files = dict(files or {})
        self.vdso = vdso
        self.cache_dir = cache_dir
        self._elfs: dict[str, ElfFile | None] = {}
        self._tables: dict[str, UnwindTable | None] = {}
        self._symbols: dict[str, SymbolTable] = {}
        self._by_start: dict[int, tuple[UnwindTable | None, int] | None] = {}

    def close(self) -> None:
        for elf in self._elfs.values():
            if elf is not None:
                elf.close()

    def mapping(self, abs_addr: int) -> Mapping | None:
        i = bisect.bisect_right(self.starts, abs_addr) - 1
        if i >= 0 and abs_addr < self.maps[i].end:
            return self.maps[i]
        return None

    def elf(self, m: Mapping) -> ElfFile | None:
        if m.path not in self._elfs:
            elf = None
            if m.path == "[vdso]":
                elf = ElfFile.from_bytes(self.vdso) if self.vdso else None
            else:
                path = self.files.get(m.path, Path(m.path))
                if path is not None and path.exists():
                    elf = ElfFile.open(path)
            self._elfs[m.path] = elf
        return self._elfs[m.path]

    def __call__(self, abs_pc: int) -> tuple[UnwindTable | None, int] | None:
        m = self.mapping(abs_pc)
        if m is None:
            return None
        if m.start not in self._by_start:
            self._by_start[m.start] = self._entry(m, abs_pc)
        return self._by_start[m.start]

    def _entry(self, m: Mapping, abs_pc: int) -> tuple[UnwindTable | None, int] | None:
        elf = self.elf(m)
        if elf is None:
            return None
        vaddr = elf.file_offset_to_vaddr(m.to_file_offset(abs_pc))
        assert vaddr is not None
        if m.path not in self._tables:
            table = build_unwind_table(elf, cache_dir=self.cache_dir, use_cache=self.cache_dir is not None)
            self._tables[m.path] = table if len(table) else None
        return self._tables[m.path], abs_pc - vaddr

    def names(self, ips: tuple[int, ...] | list[int]) -> list[str | None]:
        out: list[str | None] = []
        for pos, ip in enumerate(ips):
            addr = ip if pos == 0 else ip - 1
            m = self.mapping(addr)
            elf = self.elf(m) if m is not None else None
            if m is None or elf is None:
                out.append(None)
                continue
            if m.path not in self._symbols:
                parts = elf.symbol_parts()
                if not elf.has_symtab and m.path != "[vdso]":
                    debug = find_debug_file(elf, m.path)
                    if debug is not None:
                        parts = debug.elf.symbol_parts() + parts
                self._symbols[m.path] = SymbolTable(parts)
            vaddr = elf.file_offset_to_vaddr(m.to_file_offset(addr))
            out.append(self._symbols[m.path].lookup([vaddr])[0] if vaddr is not None else None)
        return out


# -- readelf --debug-dump=frames-interp ----------------------------------------------------------------


@dataclass
class ReadelfFde:
    """One FDE as readelf shows it: its range and rows ``(loc, {column: rule text})``, loc ascending."""

    section: str
    pc_begin: int
    pc_end: int
    rows: list[tuple[int, dict[str, str]]]
    cie: tuple[str, int]  # (section, offset) of its CIE


_SECTION = re.compile(r"^Contents of the (\S+) section")
_CIE = re.compile(r"^([0-9a-f]+) [0-9a-f]+ [0-9a-f]+ CIE")
_FDE = re.compile(r"^[0-9a-f]+ [0-9a-f]+ [0-9a-f]+ FDE cie=([0-9a-f]+) pc=([0-9a-f]+)\.\.([0-9a-f]+)")


def readelf_fdes(path: Path) -> list[ReadelfFde]:
    """Every FDE of ``path`` from ``readelf --debug-dump=frames-interp`` (FDEs readelf shows no rows for
    get the rows of their CIE: their programs are empty or all nops)."""
    text = run("readelf", "--wide", "--debug-dump=no-follow-links", "--debug-dump=frames-interp", path)
    fdes: list[ReadelfFde] = []
    cie_rows: dict[tuple[str, int], list[tuple[int, dict[str, str]]]] = {}
    section = ""
    columns: list[str] = []
    current: list[tuple[int, dict[str, str]]] | None = None
    for line in text.splitlines():
        if m := _SECTION.match(line):
            section = m.group(1)
            continue
        if m := _CIE.match(line):
            current = cie_rows[(section, int(m.group(1), 16))] = []
            continue
        if m := _FDE.match(line):
            current = []
            cie_key = (section, int(m.group(1), 16))
            fdes.append(ReadelfFde(section, int(m.group(2), 16), int(m.group(3), 16), current, cie_key))
            continue
        fields = re.sub(r"(r\d+) \((\w+)\)", r"\1(\2)", line).split()  # "r9 (r9)": one register rule
        if not fields or current is None:
            continue
        if fields[0] == "LOC":
            columns = fields[1:]
            continue
        if re.fullmatch(r"[0-9a-f]{16}", fields[0]) and len(fields) == len(columns) + 1:
            rules = dict(zip(columns, fields[1:], strict=True))
            loc = int(fields[0], 16)
            if current and current[-1][0] == loc:
                current[-1] = (loc, rules)
            else:
                current.append((loc, rules))
    for fde in fdes:
        if not fde.rows:
            cie = cie_rows.get(fde.cie, [])
            if cie:
                fde.rows = [(fde.pc_begin, cie[-1][1])]
    return fdes


def rule_matches(row: cfi.Row, rules: dict[str, str]) -> str | None:
    """None when our ``row`` agrees with readelf's rule texts for the CFA, rbp and ra; else why not."""
    cfa = rules.get("CFA", "")
    if m := re.fullmatch(r"(rsp|rbp)\+(-?\d+)", cfa):
        want = (cfi.CFA_RSP if m.group(1) == "rsp" else cfi.CFA_RBP, int(m.group(2)))
        if (row.cfa_kind, row.cfa_off) != want:
            return f"CFA {cfa} != kind {row.cfa_kind} off {row.cfa_off}"
    elif cfa == "exp":
        if row.cfa_kind == cfi.CFA_NONE:
            return f"CFA exp != kind {row.cfa_kind}"
    elif row.cfa_kind != cfi.CFA_UNSUPPORTED:  # another register (r10 in a DRAP prologue)
        return f"CFA {cfa} != kind {row.cfa_kind}"

    rbp = rules.get("rbp", "u")
    if rbp in ("u", "s"):
        ok = row.rbp_kind in (cfi.RBP_SAME, cfi.RBP_UNDEFINED) if rbp == "u" else row.rbp_kind == cfi.RBP_SAME
    elif m := re.fullmatch(r"([cv])([+-]\d+)", rbp):
        kind = cfi.RBP_CFA if m.group(1) == "c" else cfi.RBP_VAL_CFA
        ok = (row.rbp_kind, row.rbp_off) == (kind, int(m.group(2)))
    elif rbp == "exp":
        ok = row.rbp_kind in (cfi.RBP_AT_RSP, cfi.RBP_AT_RBP, cfi.RBP_UNSUPPORTED)
    else:
        ok = row.rbp_kind == cfi.RBP_UNSUPPORTED
    if not ok:
        return f"rbp {rbp} != kind {row.rbp_kind} off {row.rbp_off}"

    ra = rules.get("ra", "u")
    if m := re.fullmatch(r"c([+-]\d+)", ra):
        ok = (row.ra_kind, row.ra_off) == (cfi.RA_CFA, int(m.group(1)))
    elif ra == "u":
        ok = row.ra_kind in (cfi.RA_UNDEFINED, cfi.RA_UNSUPPORTED)
    elif ra == "exp":
        ok = row.ra_kind in (cfi.RA_AT_RSP, cfi.RA_UNSUPPORTED)
    else:
        ok = row.ra_kind == cfi.RA_UNSUPPORTED
    if not ok:
        return f"ra {ra} != kind {row.ra_kind} off {row.ra_off}"
    return None


# -- fixture binaries ---------------------------------------------------------------------------------

_DF_LIB = """extern volatile int sinkv;
__attribute__((noinline)) int df_leaf(int n) { sinkv += n; return n; }
__attribute__((noinline)) int df_func(int n) {
    int s = 0;
    for (int i = 0; i < n; i++) s += df_leaf(i);
    return s + 1;
}
"""
_DF_MAIN = """volatile int sinkv;
int df_func(int n);
int main(int argc, char **argv) { (void)argv; return df_func(argc); }
"""
CPU_SPLIT = ROOT / "tests" / "workloads" / "cpu_split.c"
UNWIND_CASES = ROOT / "tests" / "fixtures" / "src" / "unwind_cases.c"
NOFP = ["-O2", "-g", "-fomit-frame-pointer"]
CASES_FLAGS = [*NOFP, "-fno-pie", "-no-pie", "-Wl,-z,lazy"]


def cfi_fixtures(base: Path) -> dict[str, Path]:
    """Binaries of the CFI tests, built into ``base/cfi`` once (gcc, strip, objcopy):

    ``fp`` / ``nofp``: cpu_split.c, PIE, ``-O2 -g`` with / without frame pointers; ``cases``:
    unwind_cases.c, non-PIE, lazy PLT; ``mixed``: one object with ``.eh_frame``, one (``df_*``) with
    only ``.debug_frame``; ``mixed_stripped`` (no ``.debug_frame``) and its debug file ``mixed.debug``.
    """
    out = base / "cfi"
    names = ("fp", "nofp", "cases", "mixed", "mixed_stripped", "mixed.debug")
    paths = {n: out / n for n in names}
    if (out / "done").exists():
        return paths
    out.mkdir(parents=True, exist_ok=True)
    run("gcc", "-O2", "-g", "-fno-omit-frame-pointer", "-o", paths["fp"], CPU_SPLIT)
    run("gcc", *NOFP, "-o", paths["nofp"], CPU_SPLIT)
    run("gcc", *CASES_FLAGS, "-o", paths["cases"], UNWIND_CASES)
    (out / "df_lib.c").write_text(_DF_LIB)
    (out / "df_main.c").write_text(_DF_MAIN)
    obj = out / "df_lib.o"
    run(
        "gcc",
        "-O2",
        "-g",
        "-fno-asynchronous-unwind-tables",
        "-fno-unwind-tables",
        "-c",
        "-o",
        obj,
        out / "df_lib.c",
    )
    run("gcc", "-O2", "-g", "-Wl,--build-id=sha1", "-o", paths["mixed"], out / "df_main.c", obj)
    run("objcopy", "--only-keep-debug", paths["mixed"], paths["mixed.debug"])
    run("strip", "--strip-debug", "-o", paths["mixed_stripped"], paths["mixed"])
    (out / "done").touch()
    return paths


def plt_symbols(path: Path) -> dict[str, int]:
    """``{"name@plt": address}`` and ``{".plt": address}`` of a binary (``objdump -d -j .plt``)."""
    out = {}
    for line in run("objdump", "-d", "-j", ".plt", path).splitlines():
        if m := re.match(r"^([0-9a-f]+) <(\S+)>:$", line):
            out[m.group(2)] = int(m.group(1), 16)
    for line in run("readelf", "-S", "-W", path).splitlines():
        if m := re.search(r"\] \.plt\s+\S+\s+([0-9a-f]+)", line):
            out[".plt"] = int(m.group(1), 16)
    return out
