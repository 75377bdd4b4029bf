"""The errors Thunder raises about a user's program.

They derive from the interpreter's ``AcquisitionError``, so a user's ``try/except`` in the traced
program does not swallow them, and the interpreter attaches the user's Python stack (file:line)
to them.
"""

from thunder.acquire.interpreter import AcquisitionError
from thunder.prims import InvalidArgumentError  # noqa: F401 (raised by operations given bad arguments)


class UnsupportedOpError(AcquisitionError, NotImplementedError):
    """An operation Thunder cannot trace."""


class DataDependentError(AcquisitionError):
    """The program needs a tensor's value (Python control flow on it, ``.item()``, output shapes
    that depend on values) while it is being traced. Every message ends with the opt-in that
    makes such programs run."""

    def __str__(self) -> str:
        return (f"{super().__str__().rstrip('.')}. To run calls that need tensor values eagerly instead (with a "
                f"warning), compile with thunder.compile(..., fallback=\"eager\").")
