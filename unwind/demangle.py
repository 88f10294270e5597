"""Symbol names to readable names: C++ (Itanium), Rust legacy and Rust v0 manglings.

``demangle(name)`` first strips an ELF symbol version (``memcpy@@GLIBC_2.14`` -> ``memcpy``), then:

- ``_R...`` (Rust v0, RFC 2603) is demangled here, printed like rustc-demangle's ``{:#}``: no crate
  hashes, no type suffix on constants (``mycrate::example``, ``<Vec<u8>>::push``).
- ``_ZN...17h<16 hex>E`` (Rust legacy) is demangled here: the ``::h<hash>`` element is dropped and
  ``$LT$``-style escapes and ``..`` are undone (``core::fmt::Formatter::pad``).
- any other ``_Z...`` (C++) goes to ``__cxa_demangle`` of libstdc++.so.6, loaded at first use.

A name that is not mangled, cannot be demangled, or would demangle into something too large is
returned as it is (version stripped). Nothing here raises, and the work per name is bounded: input
length (``MAX_NAME``), nesting depth (``_V0_MAX_DEPTH``), output length (``MAX_OUTPUT``), and for C++ a
bound on how far back-references can expand (``_cxx_expansion_bound``), checked before the C call.
"""

from __future__ import annotations

import ctypes
import functools
import re
import string
import unicodedata
from collections.abc import Callable
from typing import Any

# Longest name (after version stripping) that is demangled at all; real names are far shorter.
MAX_NAME = 8192
# Longest demangled name returned; longer results (template bombs) leave the name mangled.
MAX_OUTPUT = 1 << 16
# Digits of an identifier's length: more cannot fit in MAX_NAME (and int() refuses > 4300 digits).
_MAX_LENGTH_DIGITS = len(str(MAX_NAME))

__all__ = ["MANGLED_PREFIXES", "MAX_NAME", "MAX_OUTPUT", "Demangler", "demangle"]


MANGLED_PREFIXES = ("_R", "_Z")  # Rust v0, and Itanium C++ (Rust legacy names are Itanium-shaped)


def demangle(name: str) -> str:
    """The demangled form of ``name``, else ``name`` without its symbol version; never raises."""
    at = name.find("@")
    if at > 0:  # "name@VER" / "name@@VER" (a symbol version); a leading "@" is not a version
        name = name[:at]
    if len(name) > MAX_NAME or not name.startswith(MANGLED_PREFIXES):
        return name
    try:
        if name.startswith("_R"):
            out = _demangle_rust_v0(name)
        else:
            legacy = name.startswith("_ZN") and _RUST_HASH_ELEMENT.search(name) is not None
            out = _demangle_rust_legacy(name) if legacy else None
            if out is None:
                out = _demangle_itanium(name)
    except (RecursionError, MemoryError):  # a deep name on an already deep stack; a huge result
        out = None
    return out if out and len(out) <= MAX_OUTPUT else name  # an empty result is no name either


class Demangler:
    """``demangle`` with a least-recently-used cache: a repeated name costs one dict lookup.

    Thread-safe (``functools.lru_cache``). ``maxsize`` is the number of names remembered.
    """

    __slots__ = ("_cached",)

    def __init__(self, maxsize: int = 1 << 16) -> None:
        self._cached = functools.lru_cache(maxsize=maxsize)(demangle)

    def __call__(self, name: str) -> str:
        return self._cached(name)

    def clear(self) -> None:
        """Forget every remembered name."""
        self._cached.cache_clear()

    def cache_info(self) -> Any:
        """Hits, misses and size of the cache (``functools._CacheInfo``)."""
        return self._cached.cache_info()


# -- C++ (Itanium ABI), through libstdc++ ----------------------------------------------------------

_LIBSTDCXX = "libstdc++.so.6"
# The C++ demangler is not called when back-references could expand a name past this many
# characters (a bound, see _cxx_expansion_bound; real names stay below 2**23, see the tests).
_CXX_EXPANSION_LIMIT = 1 << 24
# Back-references of an Itanium name: substitutions S_, S<seq-id>_ (base 36); template parameters
# T_, T<n>_; pack expansions Dp (repeat what follows); St/Sa/Ss/... (fixed std:: names).
_CXX_REF = re.compile(r"S([0-9A-Z]*)_|T[0-9]*_|Dp|S[a-z]")
_STD_ABBREV_MAX = 64  # longest expansion of an St/Sa/Sb/Ss/Si/So/Sd abbreviation, with margin
_FAST_REFS = 10  # up to this many references, the crude bound (doubling per reference) suffices


@functools.cache
def _cxa_demangle_fn() -> Callable[[str], str | None] | None:
    """``__cxa_demangle`` wrapped as str -> str, or None when libstdc++ cannot be loaded."""
    try:
        lib = ctypes.CDLL(_LIBSTDCXX)
        fn = lib.__cxa_demangle
        free = ctypes.CDLL(None).free  # the process's malloc family, which libstdc++ allocates with
    except (OSError, AttributeError):
        return None
    # char *__cxa_demangle(const char *mangled, char *buf, size_t *len, int *status)
    fn.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int)]
    fn.restype = ctypes.c_void_p  # not c_char_p: the buffer must be freed, so keep the pointer
    free.argtypes = [ctypes.c_void_p]
    free.restype = None

    def call(name: str) -> str | None:
        status = ctypes.c_int(0)
        buf = fn(name.encode("ascii"), None, None, ctypes.byref(status))
        if not buf:
            return None  # status -2: not a valid mangled name; -1: out of memory
        try:
            return ctypes.string_at(buf).decode("utf-8", "replace")
        finally:
            free(buf)

    return call


def _demangle_itanium(name: str) -> str | None:
    """C++ names (``_Z...``, with any ``.clone`` suffix) via ``__cxa_demangle``; None when not."""
    if not name.isascii() or "\0" in name:
        return None
    if not _surely_bounded(name) and _cxx_expansion_bound(name, _CXX_EXPANSION_LIMIT) > _CXX_EXPANSION_LIMIT:
        return None
    call = _cxa_demangle_fn()
    return None if call is None else call(name)


def _surely_bounded(name: str) -> bool:
    """True when even the crudest bound keeps ``name`` within ``_CXX_EXPANSION_LIMIT``: every reference
    (a match of ``_CXX_REF``, which starts with ``S``, ``T`` or ``Dp``; matches do not overlap) at most
    doubles the name. ``str.count`` in C: ~10x cheaper than ``_cxx_expansion_bound``, and true for
    most real names (13k of 14k libLLVM names), so the precise bound runs only for the rest."""
    refs_at_most = name.count("S") + name.count("T") + name.count("Dp")
    return (len(name) + _STD_ABBREV_MAX) << refs_at_most <= _CXX_EXPANSION_LIMIT


def _cxx_expansion_bound(name: str, limit: int) -> int:
    """An upper bound on the length of ``name`` with its back-references expanded (any value > limit
    once it is known to exceed ``limit``).

    Why: a substitution may refer to a component that itself holds substitutions, so a short name can
    expand exponentially (``P<P<P<int, int>, S0_>, S1_>...``: each level a few bytes and twice as long
    demangled); libstdc++ prints all of it, with no limit. The bound is in characters of the mangled
    name; the printed name is a small multiple of it (``y`` -> ``unsigned long long``).

    Each match of ``_CXX_REF`` (a superset of the real references: digits inside identifiers may match
    too) is given a size. Substitution k is a component that ends before its first use and holds only
    references to substitutions < k (the table only grows), so its size is at most its first use's
    offset plus the sizes of the references before it, less those to substitutions >= k. A template
    parameter or pack expansion is bounded by everything before it (a conversion operator's, by the
    whole name, since ``cvT_`` may refer to arguments that follow).
    """
    n = len(name)
    refs = list(_CXX_REF.finditer(name))
    if len(refs) <= _FAST_REFS:  # each reference at most doubles what precedes it
        return (n + _STD_ABBREV_MAX) << len(refs)
    conversion = name.find("cv")
    tree = [0] * (n + 2)  # Fenwick tree over substitution ids: sizes of the references to each id
    sizes: dict[int, int] = {}  # substitution id -> its size, fixed at its first use
    subst_total = 0  # sum of the sizes of substitution references so far
    total = 0  # sum of the sizes of all references so far
    for m in refs:
        pos, seq = m.start(), m.group(1)
        if seq is None:
            if m.group()[0] == "S":
                size = _STD_ABBREV_MAX
            else:
                size = pos + total + (n - pos if 0 <= conversion < pos else 0)
        else:
            if not seq:
                k = 0  # S_
            elif len(seq) <= _MAX_LENGTH_DIGITS:
                k = int(seq, 36) + 1  # S<seq>_
            else:  # int() refuses > 4300 digits in base 36, and no name has that many components
                k = n + 1
            if k > n:  # digits of an identifier, not a reference
                size = pos + total
            else:
                known = sizes.get(k)
                if known is None:
                    below = 0  # sizes of references to ids < k, from the tree
                    i = k
                    while i > 0:
                        below += tree[i]
                        i -= i & -i
                    known = sizes[k] = pos + total - (subst_total - below)
                size = known
                i = k + 1
                while i < len(tree):
                    tree[i] += size
                    i += i & -i
                subst_total += size
        total += size
        if total > limit:
            return total
    return n + total


# -- Rust legacy (_ZN...17h<hash>E) -----------------------------------------------------------------

# rustc's escapes of characters not allowed in symbols (rustc-demangle, src/legacy.rs).
_LEGACY_ESCAPES = {
    "SP": "@",
    "BP": "*",
    "RF": "&",
    "LT": "<",
    "GT": ">",
    "LP": "(",
    "RP": ")",
    "C": ",",
}
_RUST_HASH = re.compile(r"h[0-9a-fA-F]{16}")
# What every Rust legacy name holds: its hash element (length 17) closing the path. Searched first (in C)
# so that C++ ``_ZN`` names, far more common, skip the parse (a quarter of the time of a C++ name).
_RUST_HASH_ELEMENT = re.compile(r"17h[0-9a-fA-F]{16}E")
_LLVM_SUFFIX = re.compile(r"\.llvm\.[0-9A-F@]*$")  # ThinLTO renames: name.llvm.<hex>


def _strip_llvm_suffix(name: str) -> str:
    """``name`` without a ThinLTO ``.llvm.<HEX>`` suffix (rustc-demangle drops it the same way)."""
    m = _LLVM_SUFFIX.search(name)
    return name[: m.start()] if m else name


def _is_symbol_like(text: str) -> bool:
    """ASCII letters, digits and punctuation only: a suffix like ``.exit.i.i`` that is kept as is."""
    return all(c.isascii() and (c.isalnum() or c in string.punctuation) for c in text)


def _demangle_rust_legacy(name: str) -> str | None:
    """``_ZN`` (<decimal length> <element>)+ ``E`` [.suffix], last element ``h`` + 16 hex digits.

    Returns the elements but the hash joined by ``::``, unescaped; None for anything else (then it
    may still be C++). A ``.suffix`` of symbol characters is kept, ``.llvm.<hex>`` dropped.
    """
    s = _strip_llvm_suffix(name)
    if not s.isascii():
        return None
    pos, end = 3, len(s)
    elements: list[str] = []
    while True:
        if pos >= end:
            return None
        if s[pos] == "E":
            pos += 1
            break
        start = pos
        while pos < end and s[pos].isdigit():
            pos += 1
        if pos == start or pos - start > _MAX_LENGTH_DIGITS:
            return None
        length = int(s[start:pos])
        if pos + length > end:
            return None
        elements.append(s[pos : pos + length])
        pos += length
    suffix = s[pos:]
    if len(elements) < 2 or not _RUST_HASH.fullmatch(elements[-1]):
        return None
    if suffix and not (suffix[0] == "." and _is_symbol_like(suffix)):
        return None
    return "::".join(_unescape_legacy(e) for e in elements[:-1]) + suffix


def _unescape_legacy(element: str) -> str:
    """Undo rustc's legacy escapes in one path element: ``$LT$`` -> ``<``, ``$u20$`` -> `` ``, ``..`` ->
    ``::``. From an unknown escape on, the element is kept as it is (as rustc-demangle does)."""
    if element.startswith("_$"):  # an element may not start with '$', so rustc prefixed '_'
        element = element[1:]
    out: list[str] = []
    i, end = 0, len(element)
    while i < end:
        c = element[i]
        if c == ".":
            if element.startswith("..", i):
                out.append("::")
                i += 2
            else:
                out.append(".")
                i += 1
        elif c == "$":
            close = element.find("$", i + 1)
            char = _legacy_escape(element[i + 1 : close]) if close > 0 else None
            if char is None:
                out.append(element[i:])
                break
            out.append(char)
            i = close + 1
        else:
            j = i + 1
            while j < end and element[j] not in "$.":
                j += 1
            out.append(element[i:j])
            i = j
    return "".join(out)


def _legacy_escape(code: str) -> str | None:
    """The character of a legacy escape's inside (``LT``, ``u7e``), None when unknown."""
    known = _LEGACY_ESCAPES.get(code)
    if known is not None:
        return known
    if len(code) < 2 or code[0] != "u" or not all(c in "0123456789abcdef" for c in code[1:]):
        return None
    value = int(code[1:], 16)
    if value > 0x10FFFF or 0xD800 <= value <= 0xDFFF:
        return None
    char = chr(value)
    return None if unicodedata.category(char) == "Cc" else char


# -- Rust v0 (_R..., RFC 2603) -----------------------------------------------------------------------

# Deepest nesting of paths, types and constants followed; each level costs at most two Python frames.
_V0_MAX_DEPTH = 300
_V0_BASIC_TYPES = {
    "a": "i8",
    "b": "bool",
    "c": "char",
    "d": "f64",
    "e": "str",
    "f": "f32",
    "h": "u8",
    "i": "isize",
    "j": "usize",
    "l": "i32",
    "m": "u32",
    "n": "i128",
    "o": "u128",
    "p": "_",
    "s": "i16",
    "t": "u16",
    "u": "()",
    "v": "...",
    "x": "i64",
    "y": "u64",
    "z": "!",
}
_V0_UNSIGNED = frozenset("htmyoj")
_V0_SIGNED = frozenset("aslxni")
_BASE62 = {c: i for i, c in enumerate("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")}
_CHAR_ESCAPES = {"\0": "\\0", "\t": "\\t", "\r": "\\r", "\n": "\\n", "\\": "\\\\", "'": "\\'", '"': '\\"'}


class _Invalid(Exception):
    """The symbol breaks the v0 grammar, or a limit (depth, output size) was reached."""


def _demangle_rust_v0(name: str) -> str | None:
    """A v0 symbol: ``_R`` <path> [<instantiating-crate path>] [.suffix]; None when invalid."""
    inner = _strip_llvm_suffix(name)[2:]
    if not inner or not "A" <= inner[0] <= "Z" or not inner.isascii():
        return None
    printer = _V0Printer(inner)
    try:
        printer.path(in_value=True)
        if "A" <= printer.peek() <= "Z":  # the instantiating crate: parsed, not printed
            printer.skipping += 1
            printer.path(in_value=False)
            printer.skipping -= 1
    except _Invalid:
        return None
    suffix = inner[printer.pos :]
    if suffix and not (suffix[0] == "." and _is_symbol_like(suffix)):
        return None
    return "".join(printer.out) + suffix


class _V0Printer:
    """Parses a v0 mangling (without ``_R``) and prints it; raises ``_Invalid`` on any error.

    The grammar (RFC 2603, with rustc's later additions: const generics beyond integers, pattern
    types):

        path     = "C" [disambiguator] ident                 crate root
                 | "M" [disambiguator] path type             inherent impl: <type>
                 | "X" [disambiguator] path type path        trait impl: <type as trait>
                 | "Y" type path                             trait definition: <type as trait>
                 | "N" namespace path [disambiguator] ident  nested; namespace A-Z special
                 | "I" path {generic-arg} "E"                generics: path::<args> in values
                 | backref
        generic-arg = "L" base62 (lifetime) | "K" const | type
        type     = basic (one lowercase letter) | path | "A" type const | "S" type | "T" {type} "E"
                 | "R" ["L" base62] type | "Q" ["L" base62] type | "P" type | "O" type
                 | "F" [binder] ["U"] ["K" abi] {type} "E" type | "D" [binder] {dyn-trait} "E" "L" base62
                 | "W" type pattern | backref
        dyn-trait = path {"p" ident type}                    Trait<Assoc = T>
        const    = basic-int ["n"] hex "_" | "b" hex "_" | "c" hex "_" | "e" hex "_" (str bytes)
                 | "R"/"Q" const | "A" {const} "E" | "T" {const} "E" | "V" path fields | "p" | backref
        backref  = "B" base62        offset of an earlier path/type/const (after "_R")
        ident    = ["u"] decimal ["_"] bytes                "u": punycode with "_" as delimiter
        base62   = "_" (0) | [0-9a-zA-Z]+ "_" (value + 1); disambiguator = "s" base62, binder = "G" base62

    ``skipping`` > 0 parses without printing and without following backrefs (the impl path of M/X,
    the instantiating crate), as rustc-demangle does, so skipped parts cost linear time.
    """

    __slots__ = ("bound_lifetimes", "depth", "out", "pos", "size", "skipping", "sym")

    def __init__(self, sym: str) -> None:
        self.sym = sym
        self.pos = 0
        self.depth = 0
        self.out: list[str] = []
        self.size = 0
        self.skipping = 0
        self.bound_lifetimes = 0

    # -- lexing --------------------------------------------------------------------------------

    def peek(self) -> str:
        return self.sym[self.pos] if self.pos < len(self.sym) else ""

    def eat(self, c: str) -> bool:
        if self.pos < len(self.sym) and self.sym[self.pos] == c:
            self.pos += 1
            return True
        return False

    def next(self) -> str:
        if self.pos >= len(self.sym):
            raise _Invalid
        self.pos += 1
        return self.sym[self.pos - 1]

    def emit(self, text: str) -> None:
        if not self.skipping:
            self.size += len(text)
            if self.size > MAX_OUTPUT:
                raise _Invalid
            self.out.append(text)

    def push_depth(self) -> None:
        self.depth += 1
        if self.depth > _V0_MAX_DEPTH:
            raise _Invalid

    def base62(self) -> int:
        """``_`` is 0; ``<digits>_`` is the base-62 value plus one."""
        if self.eat("_"):
            return 0
        value = 0
        while not self.eat("_"):
            digit = _BASE62.get(self.next())
            if digit is None:
                raise _Invalid
            value = value * 62 + digit
            if value >= 1 << 64:  # rustc-demangle works in u64
                raise _Invalid
        return value + 1

    def opt_base62(self, tag: str) -> int:
        return self.base62() + 1 if self.eat(tag) else 0

    def hex_nibbles(self) -> str:
        start = self.pos
        while True:
            c = self.next()
            if c == "_":
                return self.sym[start : self.pos - 1]
            if c not in "0123456789abcdef":
                raise _Invalid

    def ident(self) -> tuple[str, str]:
        """(ASCII part, punycode part); the punycode part is empty for a plain identifier."""
        punycode = self.eat("u")
        start = self.pos
        if not self.peek().isdigit():
            raise _Invalid
        if self.next() != "0":
            while self.peek().isdigit():
                self.pos += 1
        if self.pos - start > _MAX_LENGTH_DIGITS:
            raise _Invalid
        length = int(self.sym[start : self.pos])
        self.eat("_")  # separates the length from an identifier starting with a digit or "_"
        if self.pos + length > len(self.sym):
            raise _Invalid
        text = self.sym[self.pos : self.pos + length]
        self.pos += length
        if not punycode:
            return text, ""
        ascii_part, _, code = text.rpartition("_")
        if not code:
            raise _Invalid
        return ascii_part, code

    def name(self) -> str:
        """An identifier as text (punycode decoded; undecodable ones shown as ``punycode{...}``)."""
        ascii_part, code = self.ident()
        return _decode_ident(ascii_part, code) if code else ascii_part

    def backref(self) -> int:
        """The target offset of a backref whose ``B`` was just read; it must point backwards."""
        b_pos = self.pos - 1
        target = self.base62()
        if target >= b_pos:
            raise _Invalid
        return target

    def follow(self, target: int, fn: Callable[[], object]) -> None:
        """Run ``fn`` at ``target`` (one level deeper), then resume after the backref."""
        saved_pos, saved_depth = self.pos, self.depth
        self.pos = target
        self.push_depth()
        fn()
        self.pos, self.depth = saved_pos, saved_depth

    # -- grammar -------------------------------------------------------------------------------

    def path(self, in_value: bool) -> None:
        self.push_depth()
        tag = self.next()
        if tag == "C":
            self.opt_base62("s")  # the crate hash: not shown in the {:#} form
            self.emit(self.name())
        elif tag == "N":
            ns = self.next()
            if not ns.isalpha():
                raise _Invalid
            self.path(in_value)
            dis = self.opt_base62("s")
            name = self.name()
            if ns.isupper():  # special namespaces: closures, shims, ...
                label = {"C": "closure", "S": "shim"}.get(ns, ns)
                self.emit(f"::{{{label}{':' + name if name else ''}#{dis}}}")
            elif name:  # lowercase: implementation-specific, shown only when named
                self.emit("::" + name)
        elif tag in "MXY":
            if tag != "Y":
                self.opt_base62("s")
                self.skipping += 1  # the impl's own path (where it is defined) is not shown
                self.path(in_value=False)
                self.skipping -= 1
            self.emit("<")
            self.type()
            if tag != "M":
                self.emit(" as ")
                self.path(in_value=False)
            self.emit(">")
        elif tag == "I":
            self.path(in_value)
            self.emit("::<" if in_value else "<")
            self.generic_args()
            self.emit(">")
        elif tag == "B":
            target = self.backref()
            if not self.skipping:
                self.follow(target, lambda: self.path(in_value))
        else:
            raise _Invalid
        self.depth -= 1

    def generic_args(self) -> None:
        """Generic arguments up to ``E``, comma-separated."""
        first = True
        while not self.eat("E"):
            if not first:
                self.emit(", ")
            first = False
            if self.eat("L"):
                self.lifetime(self.base62())
            elif self.eat("K"):
                self.const(in_value=False)
            else:
                self.type()

    def lifetime(self, index: int) -> None:
        """``'_`` for 0, else the lifetime bound ``index`` binders out (``'a``, ``'b``, ..., ``'_26``)."""
        if self.skipping:
            return
        if index == 0:
            self.emit("'_")
            return
        depth = self.bound_lifetimes - index
        if depth < 0:
            raise _Invalid
        self.emit("'" + (chr(ord("a") + depth) if depth < 26 else f"_{depth}"))

    def open_binder(self) -> int:
        """Read an optional binder ``G``: print ``for<'a, ...> `` and bring its lifetimes in scope."""
        count = self.opt_base62("G")
        if self.skipping:
            return 0
        if count:
            self.emit("for<")
            for i in range(count):  # huge counts end at MAX_OUTPUT
                if i:
                    self.emit(", ")
                self.bound_lifetimes += 1
                self.lifetime(1)
            self.emit("> ")
        return count

    def type(self) -> None:
        tag = self.next()
        basic = _V0_BASIC_TYPES.get(tag)
        if basic is not None:
            self.emit(basic)
            return
        self.push_depth()
        if tag in "RQ":
            self.emit("&")
            if self.eat("L"):
                lt = self.base62()
                if lt:
                    self.lifetime(lt)
                    self.emit(" ")
            if tag == "Q":
                self.emit("mut ")
            self.type()
        elif tag in "PO":
            self.emit("*const " if tag == "P" else "*mut ")
            self.type()
        elif tag in "AS":
            self.emit("[")
            self.type()
            if tag == "A":
                self.emit("; ")
                self.const(in_value=True)
            self.emit("]")
        elif tag == "T":
            self.emit("(")
            count = 0
            while not self.eat("E"):
                if count:
                    self.emit(", ")
                self.type()
                count += 1
            self.emit(",)" if count == 1 else ")")
        elif tag == "F":
            bound = self.open_binder()
            self.fn_signature()
            self.bound_lifetimes -= bound
        elif tag == "D":
            self.emit("dyn ")
            bound = self.open_binder()
            first = True
            while not self.eat("E"):
                if not first:
                    self.emit(" + ")
                first = False
                self.dyn_trait()
            self.bound_lifetimes -= bound
            if not self.eat("L"):
                raise _Invalid
            lt = self.base62()
            if lt:
                self.emit(" + ")
                self.lifetime(lt)
        elif tag == "B":
            target = self.backref()
            if not self.skipping:
                self.follow(target, self.type)
        elif tag == "W":
            self.type()
            self.emit(" is ")
            self.pattern()
        else:
            self.pos -= 1  # a path names the type
            self.path(in_value=False)
        self.depth -= 1

    def fn_signature(self) -> None:
        """After ``F`` and its binder: [``U``] [``K`` abi] {type} ``E`` return-type."""
        is_unsafe = self.eat("U")
        abi = None
        if self.eat("K"):
            if self.eat("C"):
                abi = "C"
            else:
                ascii_part, code = self.ident()
                if not ascii_part or code:
                    raise _Invalid
                abi = ascii_part.replace("_", "-")  # rustc wrote "-" as "_"
        if is_unsafe:
            self.emit("unsafe ")
        if abi is not None:
            self.emit(f'extern "{abi}" ')
        self.emit("fn(")
        first = True
        while not self.eat("E"):
            if not first:
                self.emit(", ")
            first = False
            self.type()
        self.emit(")")
        if not self.eat("u"):  # a unit return type is not shown
            self.emit(" -> ")
            self.type()

    def dyn_trait(self) -> None:
        """A trait of a ``dyn`` type with its associated-type bindings: ``Trait<A, Output = B>``."""
        is_open = self.trait_path()
        while self.eat("p"):
            self.emit(", " if is_open else "<")
            is_open = True
            self.emit(self.name() + " = ")
            self.type()
        if is_open:
            self.emit(">")

    def trait_path(self) -> bool:
        """Print a path, leaving its generic ``<...`` open (True) so bindings can follow."""
        if self.eat("B"):
            target = self.backref()
            if self.skipping:
                return False
            result: list[bool] = []
            self.follow(target, lambda: result.append(self.trait_path()))
            return result[0]
        if self.eat("I"):
            self.path(in_value=False)
            self.emit("<")
            self.generic_args()
            return True
        self.path(in_value=False)
        return False

    def pattern(self) -> None:
        """A pattern type's pattern: ``R`` const const (range), ``O`` {pattern} ``E`` (or), ``N``."""
        tag = self.next()
        if tag == "R":
            self.const(in_value=False)
            self.emit("..=")
            self.const(in_value=False)
        elif tag == "O":
            self.push_depth()
            self.pattern()
            while not self.eat("E"):
                self.emit(" | ")
                self.pattern()
            self.depth -= 1
        elif tag == "N":
            self.emit("!null")
        else:
            raise _Invalid

    def const(self, in_value: bool) -> None:
        """A constant; outside another constant, non-literals are braced: ``{&[1, 2]}``."""
        tag = self.next()
        self.push_depth()
        braced = False
        if tag in "eRQATV" and not in_value and not (tag == "R" and self.peek() == "e"):
            braced = True
            self.emit("{")
        if tag == "p":
            self.emit("_")
        elif tag in _V0_UNSIGNED:
            self.emit(_hex_to_decimal(self.hex_nibbles()))
        elif tag in _V0_SIGNED:
            negative = self.eat("n")
            self.emit(("-" if negative else "") + _hex_to_decimal(self.hex_nibbles()))
        elif tag == "b":
            value = _hex_value(self.hex_nibbles())
            if value not in (0, 1):
                raise _Invalid
            self.emit("true" if value else "false")
        elif tag == "c":
            value = _hex_value(self.hex_nibbles())
            if value > 0x10FFFF or 0xD800 <= value <= 0xDFFF:
                raise _Invalid
            self.emit(_quote(chr(value), "'"))
        elif tag == "e":
            self.emit("*" + self.str_literal())
        elif tag in "RQ":
            if tag == "R" and self.eat("e"):  # &str: printed as the literal itself
                self.emit(self.str_literal())
            else:
                self.emit("&" if tag == "R" else "&mut ")
                self.const(in_value=True)
        elif tag in "AT":
            self.emit("[" if tag == "A" else "(")
            count = 0
            while not self.eat("E"):
                if count:
                    self.emit(", ")
                self.const(in_value=True)
                count += 1
            self.emit("]" if tag == "A" else (",)" if count == 1 else ")"))
        elif tag == "V":
            self.path(in_value=True)
            self.variant_fields()
        elif tag == "B":
            target = self.backref()
            if not self.skipping:
                self.follow(target, lambda: self.const(in_value))
        else:
            raise _Invalid
        if braced:
            self.emit("}")
        self.depth -= 1

    def variant_fields(self) -> None:
        """The fields of a struct/variant constant: ``U`` (unit), ``T`` tuple, ``S`` named."""
        kind = self.next()
        if kind == "U":
            return
        if kind not in "TS":
            raise _Invalid
        self.emit("(" if kind == "T" else " { ")
        first = True
        while not self.eat("E"):
            if not first:
                self.emit(", ")
            first = False
            if kind == "S":
                self.opt_base62("s")
                self.emit(self.name() + ": ")
            self.const(in_value=True)
        self.emit(")" if kind == "T" else " }")

    def str_literal(self) -> str:
        """A ``str`` constant: hex-encoded UTF-8 bytes, printed quoted and escaped."""
        nibbles = self.hex_nibbles()
        if len(nibbles) % 2:
            raise _Invalid
        try:
            text = bytes.fromhex(nibbles).decode("utf-8")
        except ValueError:
            raise _Invalid from None
        return _quote(text, '"')


def _hex_value(nibbles: str) -> int:
    return int(nibbles, 16) if nibbles else 0


def _hex_to_decimal(nibbles: str) -> str:
    """An integer constant: decimal when it fits in 64 bits, else ``0x<nibbles>`` as written."""
    stripped = nibbles.lstrip("0")
    if len(stripped) > 16:
        return "0x" + nibbles
    return str(int(stripped, 16)) if stripped else "0"


def _quote(text: str, quote: str) -> str:
    """``text`` quoted and escaped like Rust's ``escape_debug`` (the other quote kind left as is)."""
    other = '"' if quote == "'" else "'"
    out = [quote]
    for i, c in enumerate(text):
        escaped = _CHAR_ESCAPES.get(c)
        if c == other:
            out.append(c)
        elif escaped is not None:
            out.append(escaped)
        elif not c.isprintable() or (
            # grapheme extenders: always in a char, only at the start of a str (Rust's rules)
            (quote == "'" or i == 0) and unicodedata.category(c) in ("Mn", "Me")
        ):
            out.append(f"\\u{{{ord(c):x}}}")
        else:
            out.append(c)
    out.append(quote)
    return "".join(out)


# Longest decoded identifier; rustc-demangle shows longer ones as punycode{...} too.
_PUNYCODE_MAX_CHARS = 128


def _decode_ident(ascii_part: str, code: str) -> str:
    """A v0 punycode identifier (RFC 3492 with ``_`` as delimiter), else ``punycode{...}``."""
    encoded = f"{ascii_part}-{code}" if ascii_part else code
    fallback = f"punycode{{{encoded}}}"
    if not all(c in "abcdefghijklmnopqrstuvwxyz0123456789" for c in code):
        return fallback  # rustc's decoder accepts only lowercase digits
    try:
        text = encoded.encode("ascii").decode("punycode")
    except (UnicodeError, ValueError, OverflowError):
        return fallback
    if len(text) > _PUNYCODE_MAX_CHARS or any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        return fallback
    return text
