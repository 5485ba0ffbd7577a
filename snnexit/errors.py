"""One exception type for every error caused by the user's input.

The CLI turns a :class:`SnnexitError` into a one-line message and exit code 2;
anything else is a bug and keeps its traceback.
"""

MAX_MESSAGE = 2000  # characters: a value shown in a message (a tensor, a huge list) is cut


class SnnexitError(Exception):
    """Bad input: unknown name, wrong shape or dtype, missing or corrupt file.

    The message is always one line: a value shown in it whose repr spans lines (a tensor, a
    dict) is joined onto one, and a message longer than :data:`MAX_MESSAGE` is cut."""

    def __init__(self, message: str = "", *args):
        text = " ".join(str(message).split())
        if len(text) > MAX_MESSAGE:
            text = text[:MAX_MESSAGE - 3] + "..."
        super().__init__(text, *args)
