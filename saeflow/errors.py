"""The one exception type users see: it names the file or config key at fault and the fix."""


class SaeflowError(Exception):
    """Bad input or configuration; the message says what is wrong and how to fix it."""
