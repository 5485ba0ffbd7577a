"""One exception type for every error caused by the user's input.

The CLI turns a :class:`SnnexitError` into a one-line message and exit code 2;
anything else is a bug and keeps its traceback.
"""


class SnnexitError(Exception):
    """Bad input: unknown name, wrong shape or dtype, missing or corrupt file."""
