"""Errors meant for people: each carries one line that says what is wrong and what to do.

Anything that is not a ``GraftError`` is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Iterator


class GraftError(Exception):
    """Bad input or a state the user can fix. The CLI prints the message alone and exits 2."""

    exit_code = 2


class ConfigError(GraftError):
    """A config file, key or value is wrong."""


class DataError(GraftError):
    """A data source cannot be found, read or used."""


class StateError(GraftError):
    """The state folder (GRAFT_HOME) cannot be written: read-only, not a folder, or its device is full."""


class WeightsError(GraftError):
    """Pretrained weights named by the config are missing or do not fit the model."""


class ValidationFailed(GraftError):
    """The target data failed the quality gate."""

    exit_code = 3


class RegistryError(GraftError):
    """The model registry or tracking server cannot do what was asked."""

    exit_code = 4


class GateCrashed(GraftError):
    """A data-gate check raised instead of judging the data: a bug or a schema problem, not bad data."""

    exit_code = 5


def exception_chain(error: BaseException | None) -> Iterator[BaseException]:
    """``error``, then what it was raised from or during (``__cause__``, else ``__context__``), once each."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        yield error
        seen.add(id(error))
        error = error.__cause__ or error.__context__


def graft_error_in_chain(error: BaseException | None) -> GraftError | None:
    """The ``GraftError`` that ``error`` is, or that was propagating when it was raised (its
    ``__cause__``/``__context__`` chain): a framework wrapping or tripping over graft's one-line
    error must not turn it into a traceback."""
    return next((link for link in exception_chain(error) if isinstance(link, GraftError)), None)


# errno values that mean the state folder's device, not graft, is at fault
DEVICE_FULL = (28, 122)  # ENOSPC, EDQUOT
READ_ONLY = (30,)  # EROFS
SQLITE_FULL = "database or disk is full"


def device_fault(text: str, code: int | None = None) -> str | None:
    """``"full"`` or ``"read-only"`` when an error's errno or message says the device is at fault, else None."""
    if code in DEVICE_FULL or "No space left on device" in text or SQLITE_FULL in text:
        return "full"
    if code in READ_ONLY or "Read-only file system" in text or "attempt to write a readonly database" in text:
        return "read-only"
    return None


def device_fault_in_chain(error: BaseException | None) -> str | None:
    """``device_fault`` of ``error`` or of anything in its ``__cause__``/``__context__`` chain."""
    faults = (device_fault(str(link), getattr(link, "errno", None)) for link in exception_chain(error))
    return next((fault for fault in faults if fault), None)


def device_fault_error(fault: str, where: str, state_root: object, detail: str) -> StateError:
    """The one line for a full or read-only state device, naming where it happened (a step, the registry)."""
    what = "no space left on the device" if fault == "full" else "the device is read-only"
    detail = " ".join(detail.split("[SQL:")[0].split())[:200]  # the failing SQL statement tells a person nothing
    return StateError(f"{where}: {what} of GRAFT_HOME {state_root} ({detail}); free some space or point GRAFT_HOME elsewhere, then run again")
