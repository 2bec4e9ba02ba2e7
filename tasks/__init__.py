"""Prefect stages of an S3FT experiment, one module per stage.

Importing this package (or `tasks.records` / `tasks.config`) loads no heavy library: torch, vllm,
prefect and mlflow are imported inside the stage that needs them.
"""
