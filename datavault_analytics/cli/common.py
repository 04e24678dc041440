"""What every command shares: the program's name, its expected errors, argument types, and the local stack."""

import argparse
import importlib
from types import ModuleType

PROG = "datavault-analytics"

SubParsers = argparse._SubParsersAction


class CommandError(Exception):
    """An expected failure of a command, told to the user in one line."""


def local_stack(module: str) -> ModuleType:
    """A module of the embedded local stack, which a source checkout has and the production image does not."""
    try:
        return importlib.import_module(f"datavault_analytics.local_stack.{module}")
    except ModuleNotFoundError as error:
        if not (error.name or "").startswith("datavault_analytics.local_stack"):
            raise
        raise CommandError(
            "the embedded local stack is not installed here (the production image leaves it out): run this "
            "from a source checkout, where `make demo` installs it, or set DATAVAULT_ENV=prod with the "
            "variables of docs/configuration.md"
        ) from None


def expected_errors() -> tuple[type[BaseException], ...]:
    """What a command reports in one line: its own errors, and the local stack's where it is installed."""
    try:
        from datavault_analytics.local_stack.errors import LocalStackError
    except ModuleNotFoundError:
        return (CommandError,)
    return (CommandError, LocalStackError)


def day(text: str):
    from datetime import date

    try:
        return date.fromisoformat(text)
    except ValueError as error:
        if len(text) == 10 and text[4] == text[7] == "-" and text.replace("-", "").isdigit():
            raise argparse.ArgumentTypeError(f"{text!r} is not a day of the calendar ({error})") from None
        raise argparse.ArgumentTypeError(f"{text!r} is not a day in YYYY-MM-DD form") from None


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value
