"""The judge protocol and its registry (extension by name)."""
from __future__ import annotations

from typing import Callable, Protocol

from tasks.core.records import Example, Verdict
from tasks.core.registry import Registry


class Judge(Protocol):
    """Decides whether a model's text answers an example correctly.

    `outcome="error"` is reserved for the judge's own failure (crash, timeout of its
    infrastructure); an unparseable answer is `incorrect` with a reason.
    """

    name: str
    version: str

    def judge(self, example: Example, text: str) -> Verdict: ...


JUDGES: Registry[Callable[..., Judge]] = Registry("judge")


def register_judge(name: str) -> Callable[[Callable[..., Judge]], Callable[..., Judge]]:
    def deco(factory: Callable[..., Judge]) -> Callable[..., Judge]:
        return JUDGES.add(name, factory)

    return deco


def judge_names() -> list[str]:
    return JUDGES.names()


def get_judge(name: str, params: dict | None = None) -> Judge:
    """The judge `name`, tuned by `params` (its config section, JudgeSettings.params); none = its defaults."""
    factory = JUDGES.get(name)
    return factory(**params) if params else factory()
