"""Data: sources by name (built-in presets register on import), prompts, benchmark data conversion."""
from tasks.data import code as _code  # noqa: F401  (registers mbpp, mbpp_sanitized, humaneval)
from tasks.data import gsm8k as _gsm8k  # noqa: F401  (registers gsm8k)
from tasks.data import nq as _nq  # noqa: F401  (registers nq)
from tasks.data.sources import Source, get_source, read_examples, register_source, source_names, split_fingerprint

__all__ = ["Source", "get_source", "read_examples", "register_source", "source_names", "split_fingerprint"]
