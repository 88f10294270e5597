"""Stacks to names: process maps, ELF symbol tables, kallsyms, symbolization.

Pure code over integers, bytes and paths; imports nothing from ``profiler`` or ``exporters``.
"""
