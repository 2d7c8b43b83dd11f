"""User-facing errors.

Anything raised as :class:`M3EError` is a problem with the user's input or environment; the CLI prints
its message (no traceback) and exits non-zero. Bugs stay ordinary exceptions so they keep tracebacks.
"""

from __future__ import annotations


class M3EError(Exception):
    """A problem the user can fix; ``str(err)`` says what and where."""


class ModelNotFoundError(M3EError):
    """The model name resolves to nothing usable here."""


class SourceMismatchError(M3EError):
    """A file we convert is not the one we know how to read (corrupt, truncated or another version)."""


class InputError(M3EError):
    """Bad texts or a malformed input file; the message names the file and line or item."""


class InputTooLong(InputError):
    """A text over the model's max length where truncation was refused (``truncate="error"``)."""
