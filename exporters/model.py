"""The symbolized profile that every exporter reads: root-first stacks of Frames with counts."""

from __future__ import annotations

from dataclasses import dataclass, field

from unwind.frame import Frame


@dataclass(frozen=True, slots=True)
class Sample:
    """A unique stack of one thread. ``frames`` run root first: user frames, then kernel frames.

    Missed stacks appear as marker frames (``[Missed User Stack]``) in the place of the stack.
    """

    pid: int
    tid: int
    comm: str
    frames: tuple[Frame, ...]


@dataclass(slots=True)
class Weight:
    """``samples``: how many samples; ``period``: sum of their sample periods (ns for cpu-clock)."""

    samples: int = 0
    period: int = 0

    def add(self, samples: int, period: int) -> None:
        self.samples += samples
        self.period += period

    def by(self, what: str) -> int:
        """``samples`` or ``period`` (one of WEIGHTS): what a flame graph's widths measure."""
        if what == "samples":
            return self.samples
        if what == "period":
            return self.period
        raise ValueError(f"unknown weight {what!r}: use one of {', '.join(WEIGHTS)}")


# What outputs weigh stacks by: sample counts, or summed sample periods (events, or ns for timers).
WEIGHTS = ("samples", "period")


@dataclass(slots=True)
class ProfileMeta:
    event: str = "cpu-clock"
    period_unit: str = "nanoseconds"  # what one unit of Weight.period is; "events" for PMC sampling
    frequency_hz: int | None = 99
    period: int | None = None
    duration_s: float = 0.0
    start_time_ns: int = 0
    command: list[str] = field(default_factory=list)
    process_names: dict[int, str] = field(default_factory=dict)  # pid -> command line or comm
    parents: dict[int, int] = field(default_factory=dict)  # pid -> parent pid, as seen at capture
    build_ids: dict[str, str] = field(default_factory=dict)  # module path -> GNU build-id (hex)


@dataclass(slots=True)
class Profile:
    samples: dict[Sample, Weight] = field(default_factory=dict)
    meta: ProfileMeta = field(default_factory=ProfileMeta)

    def add(self, sample: Sample, samples: int, period: int) -> None:
        self.samples.setdefault(sample, Weight()).add(samples, period)

    @property
    def total_samples(self) -> int:
        return sum(w.samples for w in self.samples.values())
