"""py-spy's root frames: ``--threads`` (``thread (TID): NAME``) and ``--processes`` (``process PID:"CMD"``).

py-spy (``src/main.rs``, ``src/stack_trace.rs`` ``ProcessInfo::to_frame``) adds, at the root side of each
stack and in this order from the root: one ``process PID:"COMMAND LINE"`` frame per profiled ancestor
(outermost first, with ``--subprocesses``), the sampled process's own ``process PID:"COMMAND LINE"``,
then ``thread (TID): NAME`` (``thread (TID)`` when the thread has no name) with ``--threads``. The
command line is its argv joined by single spaces; TID is the OS thread id in decimal. Those frames have
no file or line, so py-spy's raw output prints them bare: ``process 41:"python3 app.py";thread (42):
MainThread;main (app.py:3) 7``.

bpfprof's folded output starts each stack with the comm instead. With roots, the outermost root takes
the comm's place (``Sample.comm``, the root frame that folded, SVG and pprof output draw) and the others
become MARKER frames at the root side of the stack, so the folded lines read exactly as py-spy's. The
thread NAME is the thread's comm; an ancestor is a process whose parent pid (``ProfileMeta.parents``)
was itself captured (``ProfileMeta.process_names``, which holds the command lines).
"""

from __future__ import annotations

from dataclasses import replace

from exporters.model import Profile, ProfileMeta, Sample
from unwind.frame import Frame, FrameKind


def thread_label(tid: int, name: str) -> str:
    """py-spy's thread root: ``thread (TID): NAME``, or ``thread (TID)`` without a name."""
    return f"thread ({tid}): {name}" if name else f"thread ({tid})"


def process_label(pid: int, command_line: str) -> str:
    """py-spy's process root: ``process PID:"COMMAND LINE"`` (the line as is, quotes included)."""
    return f'process {pid}:"{command_line}"'


def process_chain(pid: int, meta: ProfileMeta) -> list[int]:
    """``pid`` and its captured ancestors, outermost first (a parent counts only if it was captured)."""
    chain = [pid]
    seen = {pid}
    parent = meta.parents.get(pid)
    while parent is not None and parent in meta.process_names and parent not in seen:
        chain.append(parent)
        seen.add(parent)
        parent = meta.parents.get(parent)
    return chain[::-1]


def root_labels(sample: Sample, meta: ProfileMeta, *, threads: bool, processes: bool) -> list[str]:
    """The root frame names of a sample, outermost first (empty when neither option is set).

    A process whose command line was not captured (it exited before it was seen, or a kernel thread)
    is named by its comm, as ``ProfileMeta.process_names`` does.
    """
    labels = []
    if processes:
        for pid in process_chain(sample.pid, meta):
            command_line = meta.process_names.get(pid) or (sample.comm if pid == sample.pid else "")
            labels.append(process_label(pid, command_line))
    if threads:
        labels.append(thread_label(sample.tid, sample.comm))
    return labels


def with_roots(profile: Profile, *, threads: bool = False, processes: bool = False) -> Profile:
    """A copy of ``profile`` whose stacks start at py-spy's process and thread roots.

    The outermost root replaces ``Sample.comm``; the others are MARKER frames before the stack. Samples
    that end up alike are merged (their weights added). Without either option, ``profile`` itself.
    """
    if not threads and not processes:
        return profile
    out = Profile(meta=replace(profile.meta))
    for sample, weight in profile.samples.items():
        labels = root_labels(sample, profile.meta, threads=threads, processes=processes)
        markers = tuple(Frame(label, kind=FrameKind.MARKER) for label in labels[1:])
        rooted = Sample(sample.pid, sample.tid, labels[0], markers + sample.frames)
        out.add(rooted, weight.samples, weight.period)
    return out
