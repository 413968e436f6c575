"""Typed errors. The CLI turns each into one line on stderr and a non-zero exit; the API raises them."""
import difflib
from typing import Iterable


def did_you_mean(name: object, choices: Iterable[str]) -> str:
    """" (did you mean 'x'?)" for the closest of `choices` to a mistyped `name`, or "" if none is close."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class AvgzslError(Exception):
    """Base class: a problem the user can fix (bad data, bad config), not a bug."""


class DataError(AvgzslError):
    """Bad or missing benchmark data. The message names the file (and class/video where known)."""


class ConfigError(AvgzslError):
    """Unknown key, bad value, or a model/data mismatch in the run configuration."""


class LeakageError(AvgzslError):
    """A split would train on test classes or videos (override only with an explicit, recorded flag)."""


class UnsafePickleError(DataError):
    """A pickle tried to import or call something outside the allow-list; nothing was executed."""


class WriteError(AvgzslError, OSError):
    """A file or folder could not be written (read-only, no permission, disk full); names the path and why.
    Also an OSError, so that code which already handled a failed write (e.g. the optional cache) still does."""


class RunFolderBusyError(AvgzslError):
    """Another live process holds the run folder's lock; names that process."""
