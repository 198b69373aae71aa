"""The one exception type the CLI turns into a one-line error message."""


class AdasrError(Exception):
    """Bad input or an unusable resource; the message names the culprit (file, URL, field)."""
