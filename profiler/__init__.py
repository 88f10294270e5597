"""bpfprof: sampling (CLI, sessions, perf_event set-up, BPF programs and their loading)."""

__version__ = "0.1.0"
