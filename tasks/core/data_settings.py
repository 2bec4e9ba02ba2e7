"""The `data` section: a built-in task (tasks/data/), or your own data by configuration (tasks/data/custom.py)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from tasks.core.section import Section, one_of, runtime

MIRROR_ENV = "S3FT_DATA_MIRROR"
OWN_DATA_SOURCES = ("file", "hub")


class FieldMap(Section):
    """Which columns of your data hold what (`data.source: file | hub`)."""

    question: str | None = "question"
    """The input/question column (`{question}` in `data.prompt`); null when the prompt is built from other
    columns (the rendered prompt is then what the LLM judge is told was asked)."""
    answer: str = "answer"
    """The gold answer column; a list column gives several accepted answers (the first is trained on)."""
    id: str | None = None
    """A stable id column; null = the row number (and the question decides a hash split)."""
    options: str | None = None
    """Multiple choice: a list column (or "a | b | c" text) of options, lettered A, B, ... as `{options}`."""
    tests: str | None = None
    """The `code` judge's unit tests: a list column of asserts (or text, one per line); `{tests}` in the prompt."""
    messages: str | None = None
    """A chat `messages` column ([{role, content}, ...]) used as the prompt instead of `data.prompt`."""


class DataSettings(Section):
    source: str = "gsm8k"
    """A built-in task (gsm8k, mbpp, mbpp_sanitized, humaneval, nq: tasks/data/), or your own data: `file`
    (`path` or `files`) or `hub` (`dataset`), read through `fields` and `prompt` below."""
    train_size: int | None = Field(default=200, gt=0)
    """Training questions, sampled by `seed`; null = the whole split."""
    test_size: int | None = Field(default=200, gt=0)
    """Test questions, sampled by `seed`; null = the whole split."""
    seed: int = 0
    """Default: the experiment's root `seed`."""
    mirror: str | None = runtime()
    """Folder holding `<source>/` dataset files; default: env S3FT_DATA_MIRROR; unset = Hugging Face hub.
    Runtime: the examples' content is hashed, not where they were read from."""
    system_prompt: str | None = None
    """System message put before every question; null = the model's own chat-template default."""

    path: str | None = runtime()
    """`source: file`: your data file holding every split (CSV/TSV, JSON, JSONL, Parquet, or a URL `datasets`
    reads). Runtime: the file's content is hashed, not its location."""
    files: dict[Literal["train", "test"], str] = runtime({})
    """`source: file`: one file per split instead, e.g. {train: train.csv, test: test.csv}; only `train` =
    divided as `path` is."""
    dataset: str | None = None
    """`source: hub`: the dataset id, e.g. `openai/gsm8k`."""
    dataset_config: str | None = None
    """`source: hub`: the dataset's config name (null = its default)."""
    splits: dict[Literal["train", "test"], str | None] = Field(default_factory=lambda: {"train": "train",
                                                                                         "test": "test"})
    """The split names in the hub dataset, or the values of `split_column`; test: null = divide train."""
    split_column: str | None = None
    """`source: file`: the column that says each row's split (its values in `splits`); null, with a single
    file: rows are divided by a salted hash of their id (else question), `test_percent` % to test."""
    test_percent: int = Field(default=20, gt=0, lt=100)
    fields: FieldMap = Field(default_factory=FieldMap)
    """Which columns hold what (your own data)."""
    prompt: str = "{question}"
    """The user message, with `{column}` placeholders: `{question}` is the `fields.question` column,
    `{options}` the lettered options; any other name is a column of your data."""

    @field_validator("source")
    @classmethod
    def _known_source(cls, v: str) -> str:
        from tasks.data.sources import source_names

        return one_of(v, [*source_names(), *OWN_DATA_SOURCES], "data source")

    @model_validator(mode="after")
    def _own_data(self) -> "DataSettings":
        if self.source == "file" and not (self.path or self.files):
            raise ValueError("data.source file needs data.path (one file) or data.files ({train: ..., test: ...})")
        if self.source == "file" and self.files and "train" not in self.files:
            raise ValueError("data.files needs a train file")
        if self.source == "hub" and not self.dataset:
            raise ValueError("data.source hub needs data.dataset (a hub dataset id)")
        if not self.splits.get("train"):
            raise ValueError("data.splits needs the train split's name")
        return self

    def own_data(self) -> bool:
        """Whether the data comes from `path`/`files`/`dataset` rather than a built-in task."""
        return self.source in OWN_DATA_SOURCES

    def mirror_path(self) -> Path | None:
        raw = self.mirror or os.environ.get(MIRROR_ENV)
        return Path(raw).expanduser().resolve() if raw else None


