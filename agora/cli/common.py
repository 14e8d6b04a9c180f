"""What every `agora` command shares: JSON or human output, and one-line errors.

A user error prints one line on stderr (``error[CODE]: message``) and exits non-zero; it
never shows a traceback. ``--json`` prints machine-readable output on stdout for scripts.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, NoReturn, ParamSpec, TypeVar

import orjson
import typer
from rich.console import Console

from agora.amounts import InvalidAmount, parse_agr
from agora.errors import AgoraError

P = ParamSpec("P")
R = TypeVar("R")


class CliError(AgoraError):
    """A problem the user can fix that no other layer reports (a missing option, say)."""

    code = 2


def parse_agr_option(text: str) -> int:
    """An AGR amount the user typed, in base units (``agora.amounts.parse_agr``); a CliError."""
    try:
        return parse_agr(text)
    except InvalidAmount as error:
        raise CliError(error.message) from None


def emit(data: Any, json_mode: bool, human: Callable[[Console], None] | None = None) -> None:
    """Print ``data`` as JSON, or call ``human`` to render it for a person."""
    if json_mode or human is None:
        sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    human(Console())


def fail(message: str, code: int = 1) -> NoReturn:
    sys.stderr.write(f"error[{code}]: {message}\n")
    raise typer.Exit(1)


def user_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn the errors a user can cause into one line and a non-zero exit."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except AgoraError as error:
            fail(error.message, error.code)
        except OSError as error:
            fail(f"{error.strerror or error}: {error.filename or ''}".rstrip(": "), 2)
        except KeyboardInterrupt:
            fail("interrupted", 130)

    return wrapper
