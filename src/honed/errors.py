"""User-facing errors: one line that says what went wrong and what to do."""


class HonedError(Exception):
    """An error caused by the user's input; printed as `honed: MESSAGE` without a traceback."""

    exit_code = 2


class NonFiniteLossError(HonedError):
    """Training stopped because the loss was not finite for too many consecutive steps."""

    exit_code = 3


class PartialFailure(HonedError):
    """Some of a command's items failed and the rest succeeded; what succeeded is written."""

    exit_code = 1
