"""The one exception type the CLI turns into a sentence and an exit code (tracebacks only with --debug)."""

from __future__ import annotations


class UserError(Exception):
    """Something the user can fix: the message is one sentence of what is wrong and what to do."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code
