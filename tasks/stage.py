"""The thin Prefect wrapper every stage shares: content-addressed cache key, persisted result."""
from __future__ import annotations

import logging
from typing import Any, Callable

from prefect import task
from prefect.exceptions import MissingContextError
from prefect.logging import get_run_logger

from tasks.cache import prefect_cache_key


def stage(name: str, **options: Any) -> Callable:
    """Decorate a stage function as a cached Prefect task named `name`."""
    return task(name=name, cache_key_fn=prefect_cache_key(name), persist_result=True,
                cache_expiration=None, **options)


def run_logger() -> logging.Logger | logging.LoggerAdapter:
    """Prefect's run logger inside a run; a plain logger when a stage function is called directly."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("s3ft")
