"""Prefect stages of an S3FT experiment: every module directly in this package is one stage, named after it,
declared with `@stage` (tasks/core/stage.py). What the stages share lives in the subpackages: core (config,
records, cache keys, the stage decorator, registry, errors), engines (generation backends, models, LoRA
training, lm-eval), data (sources, prompts, benchmark data) and methods (target strategies).

Importing this package (or `tasks.core.records` / `tasks.core.config`) loads no heavy library: torch, vllm,
prefect and mlflow are imported inside the code that needs them.
"""
