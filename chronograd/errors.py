"""Exception types. Messages say what was found, where, and how to fix it."""


class ChronogradError(Exception):
    """Base class for chronograd's user-facing errors."""


class UnsupportedForceError(ChronogradError):
    """An OpenMM force or option that chronograd cannot evaluate."""


class InputError(ChronogradError, ValueError):
    """Malformed or inconsistent input (file contents, shapes, non-finite values)."""


class SchemaError(InputError):
    """A serialized system does not follow the chronograd JSON schema."""
