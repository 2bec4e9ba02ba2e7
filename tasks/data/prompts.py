"""Chat prompts from plain text, and the question an example asks."""
from __future__ import annotations

from tasks.core.records import Example, Message


def chat(system_prompt: str | None, user: str) -> list[Message]:
    """A one-turn conversation: the optional system message, then the user's."""
    msgs: list[Message] = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return msgs + [{"role": "user", "content": user}]


def question_text(example: Example) -> str:
    """The last user message of an example's prompt."""
    return next(m["content"] for m in reversed(example.prompt_messages) if m["role"] == "user")


def question_of(example: Example) -> str:
    """The bare question (without passage) an example asks: `meta.question`, else its last user message."""
    q = example.meta.get("question")
    return q.strip() if isinstance(q, str) and q.strip() else question_text(example)
