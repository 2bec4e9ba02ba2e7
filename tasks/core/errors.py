"""The one family of input errors: each message names the problem (field, file, stage) and the fix.

The command line prints any of these as a single `s3ft: error: ...` line and exits non-zero; nothing
already computed is touched. Anything else is a bug: one line that says so, the traceback in a file.
"""
from __future__ import annotations

import errno
from pathlib import Path


class InputError(ValueError):
    """Bad input (config, data, model reference, output folder, cache entry); the message says the fix."""


class ConfigError(InputError):
    """A config problem; the message names the field and the fix (exit code 2)."""


class DataError(InputError):
    """A dataset problem; the message names the file/field and the fix."""


class BenchmarkDataError(InputError):
    """The mirror's benchmark files are missing or malformed; the message names the file and the fix."""


class ModelError(InputError):
    """A model reference problem; the message names the reference and the fix."""


class CacheError(InputError):
    """A cached stage output no longer matches what the stage wrote (corrupt or edited)."""


class JudgeStageError(InputError):
    """Too many verdicts were judge errors: the mix of targets would be silently wrong."""


class TargetsError(InputError):
    """An arm's strategy left nothing to train on."""


class ServiceError(InputError):
    """A server the run talks to (MLflow tracking, Prefect API) is down; the message names it and the fix."""


class TrainingLaunchError(InputError):
    """`accelerate launch` or one of its ranks failed; the ranks' own output above says why."""

    @classmethod
    def of(cls, code: int, cmd: list[str]) -> "TrainingLaunchError":
        import signal

        how = f"exited with code {code}"
        if code < 0:
            try:
                how = f"was killed by {signal.Signals(-code).name}"
            except ValueError:  # a real-time signal has no name
                how = f"was killed by signal {-code}"
        return cls(f"stage train: `accelerate launch` {how}; the ranks' output above says why. Fix: if a rank ran "
                   f"out of memory, lower training.batch_size (raise training.grad_accum to keep the effective "
                   f"batch); if the ranks could not connect, check training.accelerate_args (--main_process_port). "
                   f"Checkpoints already written are kept: run the same command to resume. Command: {' '.join(cmd)}")


class DiskFullError(InputError):
    """A write failed for lack of space (ENOSPC, EDQUOT); the message names the folder and what it needs."""

    @classmethod
    def of(cls, folder: Path, err: OSError, what: str) -> "DiskFullError":
        """The error for `what` (a stage, or a file) failing to write under `folder`."""
        import shutil

        probe = next((p for p in (folder, *folder.parents) if p.exists()), Path("/"))
        free = shutil.disk_usage(probe).free
        written = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) if folder.is_dir() else 0
        return cls(f"{what}: no space left to write in {folder} ({err.strerror}; {free / 2**20:.0f} MiB free, "
                   f"{written / 2**20:.0f} MiB written there before the failure, so it needs more than that). "
                   f"Fix: free space on that disk or point output_dir at a larger one, then run the same "
                   f"command: finished stages stay cached and only this one is redone")


NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def causes(err: BaseException) -> list[BaseException]:
    """`err` and the exceptions it was raised from or while handling, outermost first."""
    seen: list[BaseException] = []
    current: BaseException | None = err
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def disk_full(err: BaseException, where: Path) -> DiskFullError | None:
    """The one line for an error that is, underneath, a full disk (an OSError, or sqlite's "database or disk is
    full" from MLflow's store); `where` is the folder to name when the error does not. None otherwise."""
    for e in causes(err):
        if isinstance(e, DiskFullError):
            return e
        if isinstance(e, OSError) and e.errno in NO_SPACE:
            path = Path(e.filename) if e.filename else where
            return DiskFullError.of(path if path.is_dir() else path.parent, e, f"writing {path}")
        if "database or disk is full" in str(e):
            return DiskFullError.of(where, OSError(errno.ENOSPC, "database or disk is full"),
                                    f"MLflow's database under {where}")
    return None
