"""The one exception type users see: it names the file or config key at fault and the fix."""


class SaeflowError(Exception):
    """Bad input or configuration; the message says what is wrong and how to fix it."""


def single_line(err: BaseException) -> str:
    """A library's exception message as one line (its first), to quote inside a SaeflowError."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__
