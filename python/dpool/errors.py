"""The exceptions of dpool's Python package, and the one place that turns
a failed result's code and message (docs/PROTOCOL.md section 3.2) into an
exception."""

import builtins

from . import _proto as proto


class TaskError(Exception):
    """A task failed: code is its dpool error code, message the broker's or
    the function's words."""

    def __init__(self, message, code=proto.EFAILED):
        super().__init__(message)
        self.code = code
        self.message = message


class DeadlineError(TaskError):
    """The task ran past its timeout and its worker process was ended."""


class CancelledError(TaskError):
    """The task was cancelled (Pool.terminate) before it ran."""


class WorkerLostError(TaskError):
    """The workers running the task died more times than its retries allow."""


class NoFunctionError(TaskError):
    """No worker offers the function."""


class RejectedError(TaskError):
    """The broker refused: a queue or quota limit, named in the message."""


class DeniedError(TaskError, PermissionError):
    """The broker's key configuration denies the right the request needs."""


class ProtocolError(TaskError):
    """The broker said our message was malformed, or its answer was."""


_BY_CODE = {
    proto.EDEADLINE: DeadlineError,
    proto.ECANCELLED: CancelledError,
    proto.ELOST: WorkerLostError,
    proto.ENOFUNC: NoFunctionError,
    proto.EREJECTED: RejectedError,
    proto.EDENIED: DeniedError,
    proto.EPROTO: ProtocolError,
}


def _builtin_exception(message):
    """An exception a Python function raised, as dpool.worker reports it
    ("NAME: text"), raised again as itself when NAME is a built-in
    exception class (ValueError, KeyError, ...); None otherwise. Only
    built-ins: a name from the network never imports anything."""
    name, sep, text = message.partition(": ")
    if not sep:
        name, text = message, ""
    cls = getattr(builtins, name, None)
    if isinstance(cls, type) and issubclass(cls, Exception) and not issubclass(cls, OSError):
        try:
            return cls(text)
        except Exception:
            return None
    return None


def error_from(code, message):
    """The exception a failed result of this code and message raises."""
    if not isinstance(message, str):
        message = str(message)
    if code == proto.EFAILED:
        return _builtin_exception(message) or TaskError(message, code)
    return _BY_CODE.get(code, TaskError)(message, code)
