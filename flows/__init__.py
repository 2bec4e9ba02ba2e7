"""Prefect flows and the `s3ft` command line."""
