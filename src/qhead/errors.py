"""Exceptions that carry a message meant for the user (printed without a traceback)."""


class QheadError(Exception):
    """An error the user can fix: the message says what was wrong and what to change."""


class ConfigError(QheadError, ValueError):
    """A bad configuration value; the message names the field and the allowed values."""


class DataError(QheadError):
    """Unreadable, missing or inconsistent data; the message names the file."""


class CheckpointError(QheadError):
    """A missing, truncated or incompatible checkpoint."""
