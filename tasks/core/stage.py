"""The `@stage` decorator: a stage's contract declared once, a cached Prefect task derived from it.

    @stage("generate", version="2", outputs=("generations.jsonl",))
    def generate(out: Path, model: Artifact, examples: Artifact, ...) -> Artifact:

The function does the work and writes into `out`, its content-addressed folder. The decorator returns
a Prefect task that takes the same arguments (without `out`) plus a keyword `store`; it resolves
`auto` settings, derives the cache key from the bound arguments (tasks.core.cache), creates the
folder, and persists the small Artifact result so a later run's call is a cache hit. The contract
(`task.contract`) tells the flow's runner the outputs to track; `task.compute` is the plain function and
`task.key(**inputs)` the key a call with these inputs has.
"""
from __future__ import annotations

import inspect
import logging
from typing import Any, Callable, Literal

from tasks.core.cache import STORE_PARAM, StageContract, resolved
from tasks.core.errors import NO_SPACE, DiskFullError


def bind_arguments(signature: inspect.Signature, args: tuple, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The call's arguments by name, defaults applied and `auto` settings resolved."""
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()
    return {k: resolved(v) for k, v in bound.arguments.items()}


def stage(name: str, *, version: str, outputs: tuple[str, ...] = (), hashed_by: Literal["output", "inputs"] = "output",
          locations: tuple[str, ...] = (), **task_options: Any) -> Callable:
    """Declare a stage: `fn(out, **inputs)` becomes a cached Prefect task named `name`."""
    from prefect import task
    from prefect.cache_policies import CachePolicy

    contract = StageContract(name, version, tuple(outputs), hashed_by, tuple(locations))

    def declare(fn: Callable) -> Any:
        signature = inspect.signature(fn)
        params = list(signature.parameters.values())
        if not params or params[0].name != "out":
            raise TypeError(f"stage {name}: the function's first parameter must be `out` (its folder)")
        inputs = signature.replace(parameters=params[1:])
        unknown = set(contract.locations) - set(inputs.parameters)
        if unknown:
            raise TypeError(f"stage {name}: locations {sorted(unknown)} are not parameters")

        def run_stage(*args: Any, store: str, **kwargs: Any) -> Any:
            arguments = bind_arguments(inputs, args, kwargs)
            folder = contract.folder(store, arguments)
            try:
                return fn(folder, **arguments)
            except OSError as err:  # a full disk is the operator's to fix, not a bug; no cache record is written
                if err.errno in NO_SPACE:
                    raise DiskFullError.of(folder, err, f"stage {name}") from None
                raise

        def cache_key(_context: Any, parameters: dict[str, Any]) -> str:
            arguments = {k: resolved(v) for k, v in parameters.items() if k != STORE_PARAM}
            return f"{name}-{contract.key(arguments)}"

        run_stage.__signature__ = inputs.replace(  # type: ignore[attr-defined]
            parameters=[*params[1:], inspect.Parameter(STORE_PARAM, inspect.Parameter.KEYWORD_ONLY, annotation=str)])
        for attr in ("__name__", "__qualname__", "__doc__", "__module__"):
            setattr(run_stage, attr, getattr(fn, attr))
        prefect_task = task(name=name, cache_policy=CachePolicy.from_cache_key_fn(cache_key), persist_result=True,
                            cache_expiration=None, **task_options)(run_stage)
        prefect_task.contract = contract
        prefect_task.compute = fn
        prefect_task.key = lambda **kwargs: contract.key(bind_arguments(inputs, (), kwargs))
        return prefect_task

    return declare


def run_logger() -> logging.Logger | logging.LoggerAdapter:
    """Prefect's run logger inside a run; a plain logger when a stage function is called directly."""
    from prefect.exceptions import MissingContextError
    from prefect.logging import get_run_logger

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("s3ft")
