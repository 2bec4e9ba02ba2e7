"""The one family of input errors: each message names the problem (field, file, stage) and the fix.

The command line prints any of these as a single `s3ft: error: ...` line and exits non-zero; nothing
already computed is touched. Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations


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
