"""The errors a run reports in one line, naming the cause first (the Dora main prints them without a traceback)."""
from __future__ import annotations

import errno
import os
from pathlib import Path


class ConfigError(ValueError):
    """A config value that cannot run: the message names the key, the value and what to write instead."""


class CheckpointWriteError(OSError):
    """Writing a checkpoint failed: the message names the OS error (e.g. no space left on device), the path,
    and whether the previous checkpoint is intact."""


def os_error_in(exc: BaseException) -> OSError | None:
    """The first OSError with an errno in the chain of `exc` (itself, then its causes and contexts): torch's zip
    writer reports a failed write as a RuntimeError raised while the file's own OSError is being handled."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno is not None:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def checkpoint_write_error(exc: BaseException, checkpoint: Path) -> CheckpointWriteError | None:
    """What to raise when writing `checkpoint` failed with `exc`: the OS error first (ENOSPC reads "no space left
    on device"), the path, and the state of the previous checkpoint. audiocraft writes checkpoints through
    `flashy.utils.write_and_rename` (a complete temporary file renamed over the old one), so a failed write
    never touches the previous checkpoint; the partial temporary file is removed to give the space back. None
    when `exc` is not an OS error (a bug to show with its own traceback)."""
    cause = os_error_in(exc)
    if cause is None:
        return None
    reason = os.strerror(cause.errno).lower()
    name = errno.errorcode.get(cause.errno, str(cause.errno))
    tmp = Path(str(checkpoint) + ".tmp")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    if checkpoint.is_file():
        previous = (f"the previous checkpoint {checkpoint} is intact: free space (or fix the cause) and run the same "
                    "command again, the run resumes from it")
    else:
        previous = f"no checkpoint of this XP was written before ({checkpoint} does not exist)"
    written = cause.filename or checkpoint
    return CheckpointWriteError(cause.errno, f"{reason} ({name}) while writing the checkpoint {written}; {previous}")
