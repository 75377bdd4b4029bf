"""The errors Thunder raises about a user's program.

They derive from the interpreter's ``AcquisitionError``, so a user's ``try/except`` in the traced
program does not swallow them, and the interpreter attaches the user's Python stack (file:line)
to them.
"""

from thunder.acquire.interpreter import AcquisitionError


class UnsupportedOpError(AcquisitionError, NotImplementedError):
    """An operation Thunder cannot trace."""


class DataDependentError(AcquisitionError):
    """The program needs a tensor's value (Python control flow on it, ``.item()``, output shapes
    that depend on values) while it is being traced."""
