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
