"""Error types a user can act on. The CLI prints their message and exits 2, no traceback.

Why a small hierarchy: the runner must tell a per-sample failure (bad video, bad row:
record it and go on) from a setup failure (missing dataset: stop with one clear message).
"""


class RlerError(Exception):
    """Base class: an error whose message is meant for the user as it stands."""


class DataMissingError(RlerError):
    """A dataset or data root is not where the task card expects it."""


class VideoError(RlerError):
    """A video cannot be read: missing, empty, corrupt or without a video stream."""


class InputError(RlerError):
    """A malformed input row or file; the message names the file, row and field."""


class TaskError(RlerError):
    """An unknown task or an invalid task card."""
