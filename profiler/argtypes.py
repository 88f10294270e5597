"""argparse value types shared by the subcommands: each bad value is one sentence."""

from __future__ import annotations

import argparse


def positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not v > 0 or v != v or v == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: the duration must be a positive number of seconds")
    return v


def positive_int(what: str):
    def parse(text: str) -> int:
        try:
            v = int(text, 0)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number ({what})") from None
        if v <= 0:
            raise argparse.ArgumentTypeError(f"{text!r}: {what} must be positive")
        return v

    return parse
