"""Exceptions that carry a message meant for the user (printed without a traceback).

The command line prints a :class:`QheadError` (and only that) as one line, exit status 1;
any other exception is a bug in qhead and is reported as one (see :mod:`qhead.cli`).
"""


class QheadError(Exception):
    """An error the user can fix: the message says what was wrong and what to change."""


class ConfigError(QheadError, ValueError):
    """A bad configuration value; the message names the field and the allowed values."""


class DataError(QheadError):
    """Unreadable, missing or inconsistent data; the message names the file."""


class CheckpointError(QheadError):
    """A missing, truncated or incompatible checkpoint."""


class MissingFileError(QheadError, FileNotFoundError):
    """A file or folder the user named (a config file, a checkpoint…) does not exist."""


class TrainingDivergedError(QheadError, FloatingPointError):
    """The training loss stopped being finite; the message says what to change."""
