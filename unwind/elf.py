"""A pure-Python reader of ELF64 little-endian files over bytes or an mmap: headers, notes, symbols.

Every offset and size read from the file is checked against the file's length before use, so corrupt
input raises ``ElfError`` (never IndexError, a hang, or a read past the end).
"""

from __future__ import annotations

import contextlib
import itertools
import mmap
import os
import struct
from dataclasses import dataclass
from typing import Self

import numpy as np

from unwind.symtab import RawSymbols, StringSource, SymbolTable

ELF_MAGIC = b"\x7fELF"
ELFCLASS64 = 2
ELFDATA2LSB = 1

ET_EXEC = 2
ET_DYN = 3

PT_LOAD = 1
PT_NOTE = 4
PF_X = 1

SHT_NULL = 0
SHT_SYMTAB = 2
SHT_STRTAB = 3
SHT_NOTE = 7
SHT_NOBITS = 8
SHT_DYNSYM = 11
SHF_EXECINSTR = 0x4

SHN_UNDEF = 0
SHN_LORESERVE = 0xFF00
SHN_XINDEX = 0xFFFF
PN_XNUM = 0xFFFF

STT_NOTYPE = 0
STT_FUNC = 2
STT_GNU_IFUNC = 10
STB_LOCAL = 0
STB_GLOBAL = 1
STB_WEAK = 2

NT_GNU_BUILD_ID = 3

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")  # Elf64_Ehdr, 64 bytes
_PHDR = struct.Struct("<IIQQQQQQ")  # Elf64_Phdr, 56 bytes
_SHDR = struct.Struct("<IIQQQQIIQQ")  # Elf64_Shdr, 64 bytes
_NHDR = struct.Struct("<III")  # Elf64_Nhdr: namesz, descsz, type
_RELEASE_MIN = 1 << 20  # reads of a mapped file at least this big give their pages back (ElfFile._release)
SYM_DTYPE = np.dtype(
    [
        ("st_name", "<u4"),
        ("st_info", "u1"),
        ("st_other", "u1"),
        ("st_shndx", "<u2"),
        ("st_value", "<u8"),
        ("st_size", "<u8"),
    ]
)  # Elf64_Sym, 24 bytes

Buffer = bytes | mmap.mmap


class ElfError(Exception):
    """The data is not a readable ELF64 little-endian file; the message says what is wrong and where."""


@dataclass(frozen=True, slots=True)
class Section:
    """One section header. ``addr`` is an ELF vaddr (0 if not allocated); ``offset``/``size`` in bytes."""

    index: int
    name: str
    type: int
    flags: int
    addr: int
    offset: int
    size: int
    link: int
    info: int
    addralign: int
    entsize: int

    @property
    def has_data(self) -> bool:
        """True when the section occupies bytes in the file (not SHT_NOBITS / SHT_NULL)."""
        return self.type not in (SHT_NOBITS, SHT_NULL)


@dataclass(frozen=True, slots=True)
class Segment:
    """One program header: file bytes ``[offset, offset+filesz)`` load at ELF vaddr ``vaddr``."""

    type: int
    flags: int
    offset: int
    vaddr: int
    filesz: int
    memsz: int
    align: int

    @property
    def is_exec(self) -> bool:
        return bool(self.flags & PF_X)


@dataclass(frozen=True, slots=True)
class DebugLink:
    """The ``.gnu_debuglink`` section: the separate debug file's name and the CRC-32 of its contents."""

    name: str
    crc: int


class ElfFile:
    """An ELF64 little-endian file read from bytes or an mmap; header tables parsed and checked at once.

    Use ``ElfFile.open(path)`` (an mmap of the file) or ``ElfFile.from_bytes(data)``; ``close()`` (or
    ``with``) unmaps. Raises ``ElfError`` for corrupt or unsupported input.
    """

    __slots__ = (
        "_build_id",
        "_data",
        "_load_arrays",
        "_mmap",
        "_symbols",
        "elf_type",
        "machine",
        "sections",
        "segments",
    )

    def __init__(self, data: Buffer, owned_mmap: mmap.mmap | None = None) -> None:
        self._data: Buffer = data
        self._mmap = owned_mmap
        self._symbols: SymbolTable | None = None
        self._build_id: tuple[bytes | None] | None = None
        self._load_arrays: (
            tuple[tuple[Segment, ...], tuple[np.ndarray, np.ndarray, np.ndarray] | None] | None
        ) = None
        try:
            self._parse_headers()
        except ElfError:
            self.close()
            raise

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> Self:
        """Parse an ELF image held in memory (copied to bytes if it is not already)."""
        return cls(data if isinstance(data, bytes) else bytes(data))

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Self:
        """Map the file at ``path`` read-only and parse it; OSError if it cannot be opened."""
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            return cls.from_fd(fd)
        finally:
            os.close(fd)

    @classmethod
    def from_fd(cls, fd: int) -> Self:
        """Map the open file ``fd`` read-only and parse it; the caller keeps ownership of ``fd``."""
        size = os.fstat(fd).st_size
        if size == 0:
            raise ElfError("the file is empty, not an ELF file")
        try:
            mm = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as e:
            raise ElfError(f"the file cannot be mapped ({e}); not a regular ELF file") from e
        return cls(mm, owned_mmap=mm)

    @classmethod
    def from_mmap(cls, mm: mmap.mmap) -> Self:
        """Parse a read-only mapping of a file; the ElfFile takes ownership and closes it in ``close()``."""
        return cls(mm, owned_mmap=mm)

    def close(self) -> None:
        """Unmap the file (symbol names of ``symbols()`` are unreadable afterwards). Idempotent."""
        mm, self._mmap = self._mmap, None
        if mm is not None:
            try:
                mm.close()
            except BufferError:  # a numpy view is still alive somewhere; the mmap closes when it dies
                pass
        self._data = b""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- headers -----------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._data)

    def _read(self, off: int, size: int, what: str) -> bytes:
        """``size`` bytes at file offset ``off``, or ElfError naming ``what`` if they are not in the file."""
        if off < 0 or size < 0 or off + size > len(self._data):
            raise ElfError(
                f"{what} at offset {off:#x} size {size:#x} is past the end of the file ({len(self._data):#x})"
            )
        out = bytes(self._data[off : off + size])
        if size >= _RELEASE_MIN and isinstance(self._data, mmap.mmap):
            self._release(off, size)
        return out

    def _release(self, off: int, size: int) -> None:
        """Drop the mapped pages of a big read from this process's RSS once they are copied out: the
        copy is what is used, and the pages would count twice (a debug file's uncompressed DWARF: 12 MB
        of libpython's). The file is mapped read-only, so nothing is lost: a later read faults them in
        again from the page cache."""
        start = -(-off // mmap.PAGESIZE) * mmap.PAGESIZE
        end = (off + size) // mmap.PAGESIZE * mmap.PAGESIZE
        if end > start:
            with contextlib.suppress(OSError, ValueError):  # only a hint
                self._data.madvise(mmap.MADV_DONTNEED, start, end - start)  # type: ignore[union-attr]

    def _parse_headers(self) -> None:
        data = self._data
        if len(data) < _EHDR.size:
            raise ElfError(f"the file is {len(data)} bytes, shorter than an ELF64 header ({_EHDR.size})")
        (ident, e_type, e_machine, _version, _entry, phoff, shoff, _flags, _ehsize, phentsize, phnum,
         shentsize, shnum, shstrndx) = _EHDR.unpack_from(data, 0)  # fmt: skip
        if ident[:4] != ELF_MAGIC:
            raise ElfError(f"bad magic {ident[:4]!r}: not an ELF file")
        if ident[4] != ELFCLASS64:
            raise ElfError(f"ELF class {ident[4]} is not supported (only ELF64)")
        if ident[5] != ELFDATA2LSB:
            raise ElfError(f"ELF data encoding {ident[5]} is not supported (only little-endian)")
        self.elf_type = e_type
        self.machine = e_machine

        # Extended numbering (gABI): counts that do not fit in the header live in section header 0.
        sh0: tuple[int, ...] | None = None
        if shoff:
            if shentsize != _SHDR.size:
                raise ElfError(f"section header size is {shentsize}, expected {_SHDR.size}")
            sh0 = _SHDR.unpack(self._read(shoff, _SHDR.size, "section header 0"))
        if shnum == 0 and sh0 is not None:
            shnum = sh0[5]
        if phnum == PN_XNUM and sh0 is not None:
            phnum = sh0[7]
        if shstrndx == SHN_XINDEX and sh0 is not None:
            shstrndx = sh0[6]

        self.segments = self._parse_segments(phoff, phentsize, phnum)
        self.sections = self._parse_sections(shoff, shnum, shstrndx)

    def _parse_segments(self, phoff: int, phentsize: int, phnum: int) -> tuple[Segment, ...]:
        if phnum == 0:
            return ()
        if phentsize != _PHDR.size:
            raise ElfError(f"program header size is {phentsize}, expected {_PHDR.size}")
        raw = self._read(phoff, phnum * _PHDR.size, f"program header table ({phnum} entries)")
        segments = []
        for i, (p_type, flags, offset, vaddr, _paddr, filesz, memsz, align) in enumerate(
            _PHDR.iter_unpack(raw)
        ):
            # An empty segment holds no file bytes: debug-only files (objcopy --only-keep-debug, a
            # MiniDebugInfo) keep the binary's program headers with offsets past their own end.
            if filesz and offset + filesz > len(self._data):
                raise ElfError(
                    f"segment {i} (type {p_type:#x}) at offset {offset:#x} size {filesz:#x} is past the end"
                    f" of the file ({len(self._data):#x})"
                )
            segments.append(Segment(p_type, flags, offset, vaddr, filesz, memsz, align))
        return tuple(segments)

    def _parse_sections(self, shoff: int, shnum: int, shstrndx: int) -> tuple[Section, ...]:
        if shoff == 0 or shnum == 0:
            return ()
        raw = self._read(shoff, shnum * _SHDR.size, f"section header table ({shnum} entries)")
        headers = list(_SHDR.iter_unpack(raw))
        for i, h in enumerate(headers):
            sh_type, offset, size = h[1], h[4], h[5]
            if sh_type not in (SHT_NOBITS, SHT_NULL) and offset + size > len(self._data):
                raise ElfError(
                    f"section {i} at offset {offset:#x} size {size:#x} is past the end of the file"
                    f" ({len(self._data):#x})"
                )
        if shstrndx >= shnum:
            raise ElfError(f"section name table index {shstrndx} is out of range ({shnum} sections)")
        names_start = names_end = 0
        if shstrndx != SHN_UNDEF:
            strhdr = headers[shstrndx]
            if strhdr[1] != SHT_STRTAB:
                raise ElfError(f"section name table {shstrndx} has type {strhdr[1]}, not SHT_STRTAB")
            names_start, names_end = strhdr[4], strhdr[4] + strhdr[5]
        sections = []
        for i, (sh_name, sh_type, flags, addr, offset, size, link, info, addralign, entsize) in enumerate(
            headers
        ):
            name = self._cstring(names_start, names_end, sh_name, f"name of section {i}") if names_end else ""
            sections.append(
                Section(i, name, sh_type, flags, addr, offset, size, link, info, addralign, entsize)
            )
        return tuple(sections)

    def _cstring(self, start: int, end: int, off: int, what: str) -> str:
        """The NUL-terminated string at ``start+off`` in the table ``[start, end)``; ElfError if outside."""
        pos = start + off
        if not start <= pos < end:
            raise ElfError(f"{what}: offset {off:#x} is outside its string table (size {end - start:#x})")
        nul = self._data.find(b"\0", pos, end)
        return bytes(self._data[pos : end if nul < 0 else nul]).decode("utf-8", "replace")

    # -- queries -----------------------------------------------------------------------------

    @property
    def load_segments(self) -> tuple[Segment, ...]:
        """The PT_LOAD program headers, in file order."""
        return tuple(s for s in self.segments if s.type == PT_LOAD)

    def section(self, name: str) -> Section | None:
        """The first section called ``name``, or None."""
        return next((s for s in self.sections if s.name == name), None)

    def section_data(self, section: Section) -> bytes:
        """The bytes of ``section`` in the file (empty for SHT_NOBITS)."""
        if not section.has_data:
            return b""
        return self._read(section.offset, section.size, f"section {section.name or section.index}")

    @property
    def has_symtab(self) -> bool:
        """True when the file has a non-empty ``.symtab`` with contents (not stripped)."""
        return any(s.type == SHT_SYMTAB and s.size > 0 for s in self.sections)

    @property
    def build_id(self) -> bytes | None:
        """The GNU build-id (NT_GNU_BUILD_ID note), from the note sections or else PT_NOTE segments."""
        if self._build_id is None:
            self._build_id = (self._find_build_id(),)
        return self._build_id[0]

    def _find_build_id(self) -> bytes | None:
        notes = [s for s in self.sections if s.type == SHT_NOTE]
        notes.sort(key=lambda s: s.name != ".note.gnu.build-id")
        regions = [(s.offset, s.size, s.addralign, f"note section {s.name}") for s in notes]
        regions += [
            (p.offset, p.filesz, p.align, "PT_NOTE segment") for p in self.segments if p.type == PT_NOTE
        ]
        for offset, size, align, what in regions:
            found = self._scan_notes(offset, size, 8 if align == 8 else 4, what)
            if found is not None:
                return found
        return None

    def _scan_notes(self, offset: int, size: int, align: int, what: str) -> bytes | None:
        data = self._read(offset, size, what)
        pos = 0
        while pos + _NHDR.size <= len(data):
            namesz, descsz, n_type = _NHDR.unpack_from(data, pos)
            name_at = pos + _NHDR.size
            # Name and desc each start at an ``align`` boundary (8 for .note.gnu.property-style notes).
            desc_at = _align(name_at + namesz, align)
            end = _align(desc_at + descsz, align)
            if desc_at + descsz > len(data):
                raise ElfError(f"{what}: note at {pos:#x} (name {namesz} bytes, desc {descsz}) overruns it")
            if n_type == NT_GNU_BUILD_ID and data[name_at : name_at + namesz] == b"GNU\0":
                return data[desc_at : desc_at + descsz]
            pos = end  # strictly increasing: end >= pos + 12
        return None

    @property
    def debuglink(self) -> DebugLink | None:
        """The ``.gnu_debuglink`` file name and CRC-32, or None when the section is absent."""
        sec = self.section(".gnu_debuglink")
        if sec is None or not sec.has_data:
            return None
        data = self.section_data(sec)
        nul = data.find(b"\0")
        if nul <= 0:
            raise ElfError(".gnu_debuglink has no NUL-terminated file name")
        crc_at = _align(nul + 1, 4)
        if crc_at + 4 > len(data):
            raise ElfError(".gnu_debuglink ends before its CRC")
        (crc,) = struct.unpack_from("<I", data, crc_at)
        return DebugLink(data[:nul].decode("utf-8", "replace"), crc)

    def file_offset_to_vaddr(self, file_off: int) -> int | None:
        """The ELF vaddr of a file offset, via the PT_LOAD segment whose file bytes hold it; else None."""
        for seg in self.segments:
            if seg.type == PT_LOAD and seg.offset <= file_off < seg.offset + seg.filesz:
                return file_off - seg.offset + seg.vaddr
        return None

    def file_offsets_to_vaddrs(self, file_offs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Vectorised ``file_offset_to_vaddr``: (uint64 ELF vaddrs, bool mask of offsets a PT_LOAD holds).

        Where the mask is False the vaddr is 0. Arithmetic is modulo 2**64, like the ELF's own.
        """
        offs = np.asarray(file_offs, dtype=np.uint64)
        table = self._disjoint_loads()
        if table is not None:  # the usual case: one searchsorted over the segments' file ranges
            starts, ends, vaddrs = table
            i = np.searchsorted(starts, offs, side="right").astype(np.int64) - 1
            safe = np.maximum(i, 0)
            found = (i >= 0) & (offs < ends[safe])
            return np.where(found, offs - starts[safe] + vaddrs[safe], np.uint64(0)), found
        out = np.zeros(offs.shape, dtype=np.uint64)
        found = np.zeros(offs.shape, dtype=bool)
        for seg in reversed(self.load_segments):  # the first matching segment wins, as in the scalar form
            inside = (offs >= np.uint64(seg.offset)) & (offs < np.uint64(seg.offset + seg.filesz))
            out[inside] = offs[inside] - np.uint64(seg.offset) + np.uint64(seg.vaddr)
            found |= inside
        return out, found

    def _disjoint_loads(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """File starts, ends and vaddrs (uint64) of the non-empty PT_LOADs sorted by file offset, when
        their file ranges do not overlap (then at most one holds an offset); else None.

        Made once per ``segments`` (a saved recording may replace them with the binary's own).
        """
        made = self._load_arrays
        if made is None or made[0] is not self.segments:
            segs = sorted((s for s in self.load_segments if s.filesz > 0), key=lambda s: s.offset)
            disjoint = all(a.offset + a.filesz <= b.offset for a, b in itertools.pairwise(segs))
            cols = [[s.offset for s in segs], [s.offset + s.filesz for s in segs], [s.vaddr for s in segs]]
            arrays = None  # none, or overlapping: the loop of file_offsets_to_vaddrs
            if segs and disjoint and all(v <= 2**64 - 1 for col in cols for v in col):
                arrays = (
                    np.array(cols[0], np.uint64),
                    np.array(cols[1], np.uint64),
                    np.array(cols[2], np.uint64),
                )
            made = self._load_arrays = (self.segments, arrays)
        return made[1]

    def symbols(self) -> SymbolTable:
        """Function symbols of ``.symtab`` merged with ``.dynsym``, read in bulk; cached.

        Keeps STT_FUNC and STT_GNU_IFUNC symbols defined in a section, and sized STT_NOTYPE symbols in an
        executable section (hand-written assembly). Addresses are ELF vaddrs. ElfError when a symbol
        table or its string table is malformed.
        """
        if self._symbols is None:
            self._symbols = SymbolTable(self.symbol_parts())
        return self._symbols

    def symbol_parts(self) -> list[RawSymbols]:
        """The function symbols of each symbol table (``.symtab`` first), unsorted, for merging."""
        tables = [s for s in self.sections if s.type == SHT_SYMTAB and s.has_data]
        tables += [s for s in self.sections if s.type == SHT_DYNSYM and s.has_data]
        return [self._read_symbols(t) for t in tables]

    def _read_symbols(self, sec: Section) -> RawSymbols:
        what = f"symbol table {sec.name or sec.index}"
        if sec.entsize != SYM_DTYPE.itemsize:
            raise ElfError(f"{what} has entry size {sec.entsize}, expected {SYM_DTYPE.itemsize}")
        if sec.size % SYM_DTYPE.itemsize:
            raise ElfError(f"{what} size {sec.size:#x} is not a multiple of {SYM_DTYPE.itemsize}")
        if not 0 < sec.link < len(self.sections):
            raise ElfError(f"{what} links to string table {sec.link}, out of range")
        strsec = self.sections[sec.link]
        if strsec.type != SHT_STRTAB or not strsec.has_data:
            raise ElfError(f"{what} links to section {sec.link}, which is not a string table with contents")

        # Per-section facts, indexed by st_shndx (special indices map to the extra last slot).
        nsec = len(self.sections)
        sec_exec = np.zeros(nsec + 1, dtype=bool)
        sec_end = np.zeros(nsec + 1, dtype=np.uint64)
        for s in self.sections:
            sec_exec[s.index] = bool(s.flags & SHF_EXECINSTR)
            sec_end[s.index] = (s.addr + s.size) & 0xFFFF_FFFF_FFFF_FFFF

        # Elf64_Sym as three little-endian uint64 words: [st_name | st_info<<32 | st_other<<40 |
        # st_shndx<<48, st_value, st_size]; plain integer arrays compress far faster than records.
        words = np.frombuffer(self._data, dtype="<u8", count=sec.size // 8, offset=sec.offset).reshape(-1, 3)
        w0 = words[:, 0]
        stype = (w0 >> np.uint64(32)) & np.uint64(0xF)
        shndx = w0 >> np.uint64(48)
        defined = (shndx != SHN_UNDEF) & (shndx < SHN_LORESERVE)
        keep = defined & ((stype == STT_FUNC) | (stype == STT_GNU_IFUNC))
        notype = defined & (stype == STT_NOTYPE) & (words[:, 2] > 0)
        if notype.any():
            keep |= notype & sec_exec[np.minimum(shndx, nsec).astype(np.intp)]
        kept = np.take(words, np.flatnonzero(keep), axis=0)  # a copy: no view of the file survives
        del words, w0, stype, shndx, defined, notype, keep
        w0 = kept[:, 0]
        name_offs = (w0 & np.uint64(0xFFFF_FFFF)).astype(np.uint32)
        info = ((w0 >> np.uint64(32)) & np.uint64(0xFF)).astype(np.uint16)
        addrs = kept[:, 1].copy()
        sizes = kept[:, 2].copy()
        bind = info >> 4
        is_notype = ((info & 0xF) == STT_NOTYPE).astype(np.uint16)
        ends = sec_end[np.minimum(w0 >> np.uint64(48), nsec).astype(np.intp)]

        if len(name_offs) and int(name_offs.max()) >= strsec.size:
            bad = int(np.count_nonzero(name_offs >= strsec.size))
            raise ElfError(f"{what}: {bad} symbol names start past the end of string table {strsec.name}")
        # Rank among aliases at one address: fewest leading underscores ("getpid" over "__getpid"),
        # then global over weak over local, then FUNC over NOTYPE.
        strtab = np.frombuffer(self._data, dtype=np.uint8, count=strsec.size, offset=strsec.offset)
        last = np.int64(strsec.size - 1)
        offs64 = name_offs.astype(np.int64)
        u0 = strtab[offs64] == ord("_")
        u1 = u0 & (strtab[np.minimum(offs64 + 1, last)] == ord("_"))
        u2 = u1 & (strtab[np.minimum(offs64 + 2, last)] == ord("_"))
        del strtab
        underscores = u0.astype(np.uint16) + u1 + u2
        bind_rank = _BIND_RANK[np.minimum(bind, len(_BIND_RANK) - 1)]
        rank = (underscores << 4) | (bind_rank << 1) | is_notype
        return RawSymbols(
            addrs=addrs,
            sizes=sizes,
            name_offs=name_offs,
            rank=rank.astype(np.uint16),
            strings=StringSource(self._data, strsec.offset, strsec.offset + strsec.size),
            section_ends=ends,
        )


# Rank of a symbol binding among aliases: global, then weak, then local, then anything else.
_BIND_RANK = np.array(
    [2 if b == STB_LOCAL else 0 if b == STB_GLOBAL else 1 if b == STB_WEAK else 3 for b in range(16)],
    np.uint16,
)


def _align(n: int, a: int) -> int:
    return (n + a - 1) & ~(a - 1)
