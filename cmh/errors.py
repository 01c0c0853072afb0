"""Errors that the CLI turns into a one-line message and exit code 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class CMHError(Exception):
    """A user-facing error: the message names the problem and the fix (printed without a traceback)."""


class ConfigError(CMHError, ValueError):
    """An unknown or invalid configuration key/value."""


class DataError(CMHError, ValueError):
    """A dataset file that is missing, unreadable or inconsistent."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest choice, or ``""`` if nothing is close."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


class UninformativeBitsWarning(UserWarning):
    """Some code bits carry no information: more bits were requested than the method has informative
    projections, or bits came out constant over the training items."""
