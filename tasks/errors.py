"""The one family of input errors: each message names the problem (field, file, stage) and the fix.

The command line prints any of these as a single `s3ft: error: ...` line and exits non-zero; nothing
already computed is touched. Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations


class InputError(ValueError):
    """Bad input (config, data, model reference, output folder, cache entry); the message says the fix."""


class CacheError(InputError):
    """A cached stage output no longer matches what the stage wrote (corrupt or edited)."""
