"""The error a user can fix, and the command line's exit codes.

A leaf module: the API raises ``UsageError`` and the command line turns it
into one line per problem and ``USAGE_ERROR``, with neither importing the other
for it.
"""

from __future__ import annotations

SEARCH_FAILED = 1  # the search could not go on: its results directory filled up or turned read-only
USAGE_ERROR = 2  # a mistake in what the user asked for: a flag, a search file, a name
INTERRUPTED = 130  # the user pressed Ctrl-C


class UsageError(Exception):
    """A problem the user can fix; each line of ``lines`` names one and says what to do."""

    def __init__(self, lines: list[str]):
        self.lines = list(lines)
        super().__init__("; ".join(self.lines))


class SearchStopped(UsageError):
    """The search stopped for something outside it (a full disk, a read-only results directory); one line each.

    What finished before stays in the results directory. The command prints
    the lines as it does a ``UsageError``'s and exits with ``exit_code``.
    """

    exit_code = SEARCH_FAILED


class SearchFileWarning(FutureWarning):
    """A search file uses a form that still reads but has a newer spelling; the command prints it as one line."""
