"""The one exception type the CLI turns into a one-line error message."""


class AdasrError(Exception):
    """Bad input or an unusable resource; the message names the culprit (file, URL, field)."""


def first_line(err: Exception) -> str:
    """A library exception's first line (or its type when it has no message), for one-line errors."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
