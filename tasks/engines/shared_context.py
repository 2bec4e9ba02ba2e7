"""lm-eval's transformers model with each context scored once: the continuations of a multiple-choice question
share its context, so the context runs through the model once and every continuation is scored from its
key/value cache. lm-eval's tasks, requests and metrics are unchanged; only the arithmetic is not repeated.

lm-eval's `hf` model runs context + continuation for every choice (its own TODO: "lump together requests with
the same context"); a 6-shot TruthfulQA prompt is ~200 tokens and each answer ~15, so most of that work is the
same context again. The log-probabilities are the same up to float rounding (tests/test_shared_context.py
compares both on the same requests; perf/benchmarks.py compares whole benchmark runs).
"""
from __future__ import annotations

from typing import Any

from lm_eval.models.huggingface import HFLM

Request = tuple[tuple[str, str], list[int], list[int]]


def context_groups(requests: list[Request], max_length: int) -> tuple[dict[tuple[int, ...], list[int]], list[int]]:
    """Request indices by context tokens, and the indices too long for the model (lm-eval truncates those)."""
    groups: dict[tuple[int, ...], list[int]] = {}
    too_long = []
    for i, (_, ctx, cont) in enumerate(requests):
        if len(ctx) + len(cont) > max_length + 1:
            too_long.append(i)
        else:
            groups.setdefault(tuple(ctx), []).append(i)
    return groups, too_long


def batches(groups: dict[tuple[int, ...], list[int]], budget: int, rows: int) -> list[list[tuple[int, ...]]]:
    """Contexts longest first (any memory error comes at once, as in lm-eval), at most `budget` padded context
    tokens and at most `rows` continuations per batch (a batch always takes at least one context)."""
    out: list[list[tuple[int, ...]]] = []
    n_rows = 0
    for ctx in sorted(groups, key=lambda c: (-len(c), c)):
        current = out[-1] if out else []
        if current and ((len(current) + 1) * len(current[0]) > budget or n_rows + len(groups[ctx]) > rows):
            current = []
        if not current:
            out.append(current)
            n_rows = 0
        current.append(ctx)
        n_rows += len(groups[ctx])
    return out


def token_budget(batch_size: int | str) -> int:
    """Tokens (rows x padded width) per forward pass: lm-eval's batch (default 8) of 256-token sequences."""
    return (batch_size if isinstance(batch_size, int) else 8) * 256


class SharedContextHFLM(HFLM):
    """`HFLM` whose causal loglikelihood scores each distinct context once per batch (see the module doc)."""

    forward_tokens = 0
    """Tokens through the transformer body (padding excluded), for FLOP accounting (perf/quickstart.py)."""
    vocab_rows = 0
    """Positions projected onto the vocabulary (padded continuation rows included)."""

    def _loglikelihood_tokens(self, requests: list[Request], disable_tqdm: bool = False,
                              override_bs: int | None = None) -> list[tuple[float, bool]]:
        from tqdm.auto import tqdm

        if self.backend != "causal":
            return super()._loglikelihood_tokens(requests, disable_tqdm, override_bs)
        groups, too_long = context_groups(requests, self.max_length)
        results: dict[int, tuple[float, bool]] = {}
        if too_long:  # left truncation: lm-eval's own path, unchanged
            results.update(zip(too_long, super()._loglikelihood_tokens([requests[i] for i in too_long],
                                                                       disable_tqdm, override_bs)))
        budget = token_budget(override_bs or self.batch_size)
        bar = tqdm(total=len(requests) - len(too_long), disable=disable_tqdm or self.rank != 0,
                   desc="Running loglikelihood requests (shared contexts)")
        for batch in batches(groups, budget, rows=budget // 4):
            rows = [i for ctx in batch for i in groups[ctx]]
            for i, answer in zip(rows, self._score_batch(batch, [groups[c] for c in batch], requests)):
                results[i] = answer
                if requests[i][0] is not None:
                    self.cache_hook.add_partial("loglikelihood", requests[i][0], answer)
            bar.update(len(rows))
        bar.close()
        return [results[i] for i in range(len(requests))]

    def _score_batch(self, contexts: list[tuple[int, ...]], members: list[list[int]],
                     requests: list[Request]) -> list[tuple[float, bool]]:
        """(log-prob, greedy) of every continuation of `contexts` (members[k] are the requests of context k)."""
        import torch
        import torch.nn.functional as F

        n_ctx, width = len(contexts), max(len(c) for c in contexts)
        ids = torch.zeros(n_ctx, width, dtype=torch.long)
        mask = torch.zeros(n_ctx, width, dtype=torch.long)
        for k, ctx in enumerate(contexts):  # left padding: every context ends at the last position
            ids[k, width - len(ctx):] = torch.tensor(ctx)
            mask[k, width - len(ctx):] = 1
        mask = mask.to(self.device)
        owner = [k for k, m in enumerate(members) for _ in m]
        conts = [requests[i][2] for m in members for i in m]
        answers: list[tuple[float, bool]] = [(0.0, False)] * len(conts)
        with torch.inference_mode():
            out = self.model(input_ids=ids.to(self.device), attention_mask=mask,
                             position_ids=(mask.cumsum(-1) - 1).clamp(min=0), use_cache=True, logits_to_keep=1)
            first = F.log_softmax(out.logits[:, -1].float(), dim=-1, dtype=self.softmax_dtype)
            self.forward_tokens += int(mask.sum())
            self.vocab_rows += n_ctx
            for rows in row_chunks([len(c) - 1 for c in conts], budget=token_budget(self.batch_size)):
                rest = self._continuations(out.past_key_values, mask, [owner[r] for r in rows], [conts[r] for r in rows])
                for j, r in enumerate(rows):
                    answers[r] = _answer(first[owner[r]], None if rest is None else rest[j], conts[r])
        return answers

    def _continuations(self, cache: Any, ctx_mask: Any, owner: list[int], conts: list[list[int]]) -> Any:
        """Log-probs at every continuation position after the first, each row on its context's cache
        ([rows, longest continuation - 1, vocab]); None when every continuation is one token."""
        import torch
        import torch.nn.functional as F
        from transformers import DynamicCache

        width = max(len(c) for c in conts) - 1
        if width == 0:
            return None
        ids = torch.zeros(len(conts), width, dtype=torch.long)
        mask = torch.zeros(len(conts), width, dtype=torch.long)
        for r, cont in enumerate(conts):
            ids[r, :len(cont) - 1] = torch.tensor(cont[:-1])
            mask[r, :len(cont) - 1] = 1
        index = torch.tensor(owner, device=self.device)
        # one copy of its context's keys/values per row (a sliding-window layer keeps its window)
        rows_cache = DynamicCache([(k[index], v[index], *rest) for k, v, *rest in cache])
        rows_mask = ctx_mask[index]
        positions = rows_mask.sum(-1, keepdim=True) + torch.arange(width, device=self.device)
        out = self.model(input_ids=ids.to(self.device), attention_mask=torch.cat([rows_mask, mask.to(self.device)], 1),
                         position_ids=positions, past_key_values=rows_cache, use_cache=True)
        self.forward_tokens += int(mask.sum())
        self.vocab_rows += out.logits.shape[0] * out.logits.shape[1]
        return F.log_softmax(out.logits.float(), dim=-1, dtype=self.softmax_dtype)


def row_chunks(lengths: list[int], budget: int) -> list[list[int]]:
    """Row indices, longest first, in chunks of at most `budget` padded tokens, `budget // 32` rows (each row
    copies its context's cache) and a quarter padding (a long row does not drag short ones to its width)."""
    order = sorted(range(len(lengths)), key=lambda r: -lengths[r])
    chunks: list[list[int]] = []
    real = 0
    for r in order:
        n, width = (len(chunks[-1]), max(lengths[chunks[-1][0]], 1)) if chunks else (0, 0)
        if chunks and n < budget // 32 and (n + 1) * width <= min(budget, 1.25 * (real + lengths[r])):
            chunks[-1].append(r)
            real += lengths[r]
        else:
            chunks.append([r])
            real = lengths[r]
    return chunks


def _answer(first: Any, rest: Any, cont: list[int]) -> tuple[float, bool]:
    """lm-eval's answer: the continuation's summed log-prob, and whether every token is the greedy one."""
    import torch

    lp, greedy = float(first[cont[0]]), int(first.argmax()) == cont[0]
    if len(cont) > 1:
        logp = rest[:len(cont) - 1]
        tokens = torch.tensor(cont[1:], device=logp.device)
        lp += float(logp.gather(-1, tokens.unsqueeze(-1)).sum())
        greedy = greedy and bool((logp.argmax(-1) == tokens).all())
    return lp, greedy
