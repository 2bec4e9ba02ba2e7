"""The judge protocol and its registry (extension by name)."""
from __future__ import annotations

from typing import Callable, Protocol

from tasks.records import Example, Verdict


class Judge(Protocol):
    """Decides whether a model's text answers an example correctly.

    `outcome="error"` is reserved for the judge's own failure (crash, timeout of its
    infrastructure); an unparseable answer is `incorrect` with a reason.
    """

    name: str
    version: str

    def judge(self, example: Example, text: str) -> Verdict: ...


_REGISTRY: dict[str, Callable[[], Judge]] = {}


def register_judge(name: str) -> Callable[[Callable[[], Judge]], Callable[[], Judge]]:
    def deco(factory: Callable[[], Judge]) -> Callable[[], Judge]:
        _REGISTRY[name] = factory
        return factory

    return deco


def judge_names() -> list[str]:
    return sorted(_REGISTRY)


def get_judge(name: str) -> Judge:
    try:
        return _REGISTRY[name]()
    except KeyError:
        raise KeyError(f"unknown judge {name!r}; known judges: {', '.join(judge_names())}") from None
