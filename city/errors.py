"""Errors that carry a message meant for the user (one clear line)."""


class XunjianError(Exception):
    """Base class: the CLI prints ``str(err)`` as one line and exits non-zero."""


class DataError(XunjianError):
    """A city data file is missing, malformed or inconsistent (names the file and field)."""


class NotFound(XunjianError):
    """A case, code, department or area that does not exist."""


class IllegalTransition(XunjianError):
    """A lifecycle action that the case's current status does not allow."""


class InvalidInput(XunjianError):
    """Bad user input: a coordinate, a time, a missing reason..."""
