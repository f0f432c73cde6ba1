"""Every error a user can act on. Each message names the problem and what to do about it.

The CLI prints any StcoreError as one line, `error: ...`, with exit code 2; the dashboard shows
it as one line on the page. Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations


class StcoreError(Exception):
    """The base of stcore's errors: the message is meant for the user, in one line."""


class UsageError(StcoreError, ValueError):
    """A wrong argument or option (a ValueError too, for code that catches those)."""


class NotFound(StcoreError, KeyError):
    """An item, run or class that does not exist (a KeyError too)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ConfigError(UsageError):
    """A config field with a wrong name, type or value."""


class DeviceError(UsageError):
    """An unknown or unavailable device; the message lists the available ones."""


class LaunchError(UsageError):
    """The dashboard cannot start as asked."""


class ProjectError(StcoreError):
    """A project that cannot be created, opened or used as asked."""


class DataError(StcoreError):
    """A dataset that cannot be found or read; the message says where we looked."""


class StoreError(StcoreError):
    """A project store that cannot be opened or used."""


class AccessError(StcoreError):
    """A wrong name or password, too many failed sign-ins, or an action the person's role may not take."""


class DeviceBusy(StcoreError):
    """Another job of this project holds the device."""


class NonFiniteLoss(StcoreError):
    """The loss became NaN or infinite; training stopped at once."""


def message(e: BaseException) -> str:
    """The one line to show for an error."""
    return str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
