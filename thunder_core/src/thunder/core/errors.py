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

    hint = ("Make the branch independent of tensor values (e.g. use torch.where), move it out of "
            "the compiled function, or compile with fallback='eager' to run such calls eagerly.")

    def __str__(self):
        return f"{super().__str__()}\n{self.hint}"
