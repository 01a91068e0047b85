"""Errors meant for people: each carries one line that says what is wrong and what to do.

Anything that is not a ``GraftError`` is a bug and keeps its traceback.
"""


class GraftError(Exception):
    """Bad input or a state the user can fix. The CLI prints the message alone and exits 2."""

    exit_code = 2


class ConfigError(GraftError):
    """A config file, key or value is wrong."""


class DataError(GraftError):
    """A data source cannot be found, read or used."""


class ValidationFailed(GraftError):
    """The target data failed the quality gate."""

    exit_code = 3


class RegistryError(GraftError):
    """The model registry or tracking server cannot do what was asked."""

    exit_code = 4


class GateCrashed(GraftError):
    """A data-gate check raised instead of judging the data: a bug or a schema problem, not bad data."""

    exit_code = 5


def graft_error_in_chain(error: BaseException | None) -> GraftError | None:
    """The ``GraftError`` that ``error`` is, or that was propagating when it was raised (its
    ``__cause__``/``__context__`` chain): a framework wrapping or tripping over graft's one-line
    error must not turn it into a traceback."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, GraftError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None
