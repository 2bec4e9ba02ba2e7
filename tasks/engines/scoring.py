"""Teacher-forced scoring of answers under causal LMs (transformers): the mean log-probability of each
conversation's final answer (familiarity), and per-token KL between two models on the same text (drift).
The base model's side of drift is computed once for every arm (`base_reference`): the input of its output
embedding at the answer positions, which each arm's drift projects onto the vocabulary again.
On CPU the weights are fp32; on a GPU they are loaded in bfloat16 there. Log-softmax is always taken in fp32.

Both use the chat template and answer-only masking of training (engines.lora.encode_target), so "the
answer" means the same tokens everywhere. Conversations are batched by length; padding does not change
a conversation's scores beyond float rounding (tests/test_familiarity.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from tasks.core.records import Example, Generation, read_jsonl
from tasks.engines.lora import IGNORE, answer_start, answer_window, encode_target

Conversation = list[dict[str, str]]


@dataclass(frozen=True)
class DriftItem:
    """One conversation's answer under the base model and an arm: means over its answer tokens."""

    n_tokens: int
    kl: float
    """Mean over answer positions of KL(p_base || p_arm), the full next-token distributions (nats)."""
    logprob_base: float
    logprob_arm: float


@dataclass
class Work:
    """What scoring computed, for FLOP accounting (perf/quickstart.py): tokens through the transformer body
    (padding excluded) and rows projected onto the vocabulary."""

    forward_tokens: int = 0
    vocab_rows: int = 0


def drift_conversations(prompts: Path, replies: Path) -> tuple[list[Generation], list[Conversation]]:
    """Drift's text: the base model's replies and, per reply, its prompt followed by it as the answer."""
    examples = {e.id: e for e in read_jsonl(prompts, Example)}
    gens = read_jsonl(replies, Generation)
    return gens, [examples[g.example_id].prompt_messages + [{"role": "assistant", "content": g.text}] for g in gens]


def _load(model_dir: Path):
    import torch
    from transformers import AutoModelForCausalLM

    if torch.cuda.is_available():  # a 7B model: bf16 weights on the GPU, fp32 log-softmax below
        return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16).to("cuda").eval()
    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()


def _batches(model_dir: Path, conversations: list[Conversation], batch_size: int,
             max_len: int) -> Iterator[tuple[list[int], Any | None]]:
    """(indices, padded batch) in length order; a batch of None for conversations whose prompt does not fit."""
    from tqdm.auto import tqdm
    from transformers import AutoTokenizer, DataCollatorForSeq2Seq

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    encoded = [encode_target(tokenizer, c, max_len) for c in conversations]
    skipped = [i for i, e in enumerate(encoded) if e is None]
    if skipped:
        yield skipped, None
    order = sorted((i for i, e in enumerate(encoded) if e is not None), key=lambda i: len(encoded[i]["input_ids"]))
    pad = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE)
    for start in tqdm(range(0, len(order), batch_size), desc="scoring", unit="batch"):
        idx = order[start:start + batch_size]
        yield idx, pad([encoded[i] for i in idx])


def _answer_logits(model, batch, work: Work, hidden=None) -> tuple[Any, Any, Any]:
    """Next-token logits at every answer position, the answer tokens, and each row's conversation index
    (the vocabulary projection runs only from the first answer position on, as in training). With `hidden`
    (the batch's stored input of the output embedding, `base_reference`) only the projection runs."""
    import torch

    device = next(model.parameters()).device
    with torch.inference_mode():
        if hidden is None:
            logits, labels = answer_window(model, batch["input_ids"].to(device),
                                           batch["attention_mask"].to(device), batch["labels"].to(device))
            work.forward_tokens += int(batch["attention_mask"].sum())
        else:
            labels = batch["labels"][:, answer_start(batch["labels"]) + 1:].to(device)
            if hidden.shape[:2] != labels.shape:
                raise ValueError(f"drift reference batch of shape {tuple(hidden.shape[:2])} does not match the "
                                 f"answer window {tuple(labels.shape)}: it was computed on other text or batches")
            logits = model.get_output_embeddings()(hidden.to(device))
    work.vocab_rows += logits.shape[0] * logits.shape[1]
    mask = labels != IGNORE
    return logits[mask].float(), labels[mask], mask.nonzero()[:, 0]


def _per_conversation(values, rows, n: int) -> tuple[list[float], list[int]]:
    import torch

    rows, values = rows.cpu(), values.double().cpu()
    sums = torch.zeros(n, dtype=torch.float64).index_add_(0, rows, values)
    counts = torch.bincount(rows, minlength=n)
    return (sums / counts.clamp(min=1)).tolist(), counts.tolist()


def answer_logprobs(model_dir: Path, conversations: list[Conversation], batch_size: int = 8,
                    max_len: int = 4096, work: Work | None = None) -> list[float]:
    """Mean log-probability per answer token of each conversation's final assistant message (NaN when the
    prompt alone exceeds `max_len`)."""
    import torch

    model, work = _load(model_dir), work if work is not None else Work()
    out: dict[int, float] = {}
    for idx, batch in _batches(model_dir, conversations, batch_size, max_len):
        if batch is None:
            out.update({i: float("nan") for i in idx})
            continue
        logits, tokens, rows = _answer_logits(model, batch, work)
        token_lp = torch.log_softmax(logits, dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
        means, _ = _per_conversation(token_lp, rows, len(idx))
        out.update(zip(idx, means))
    return [out[i] for i in range(len(conversations))]


def base_reference(base_dir: Path, conversations: list[Conversation], batch_size: int = 8, max_len: int = 4096,
                   work: Work | None = None) -> dict[str, Any]:
    """The base model's side of `answer_drift`, for every arm at once: per batch `k` of the answer windows,
    `hidden.k`, the input of the base model's output embedding (its final hidden states there)."""
    base, work = _load(base_dir), work if work is not None else Work()
    captured: list[Any] = []
    hook = base.get_output_embeddings().register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
    tensors: dict[str, Any] = {}
    try:
        for k, (_idx, batch) in enumerate(_batches(base_dir, conversations, batch_size, max_len)):
            if batch is not None:
                captured.clear()
                _answer_logits(base, batch, work)
                tensors[f"hidden.{k}"] = captured[-1].detach().cpu().contiguous()
    finally:
        hook.remove()
    return tensors


def answer_drift(base_dir: Path, arm_dir: Path, conversations: list[Conversation], batch_size: int = 8,
                 max_len: int = 4096, work: Work | None = None,
                 reference: dict[str, Any] | None = None) -> list[DriftItem | None]:
    """Per conversation, how the arm's next-token distributions differ from the base model's over the answer
    (the base model's own reply): mean KL(base || arm) and both mean token log-probs. The same batches go
    through both models, so the base model against itself gives exactly 0. With `reference`
    (`base_reference` of the same conversations and batch size) the base model's body does not run again."""
    import torch

    base, arm, work = _load(base_dir), _load(arm_dir), work if work is not None else Work()
    out: dict[int, DriftItem | None] = {}
    for k, (idx, batch) in enumerate(_batches(base_dir, conversations, batch_size, max_len)):
        if batch is None:
            out.update({i: None for i in idx})
            continue
        hidden = None if reference is None else reference.get(f"hidden.{k}")
        if reference is not None and hidden is None:
            raise ValueError(f"drift reference has no batch {k}: it was computed on other text or batches")
        base_logits, tokens, rows = _answer_logits(base, batch, work, hidden)
        arm_logits, _, _ = _answer_logits(arm, batch, work)
        lp_base, lp_arm = torch.log_softmax(base_logits, dim=-1), torch.log_softmax(arm_logits, dim=-1)
        p_base = lp_base.exp()  # where p_base is 0 the term is 0, even against a -inf log-prob of the arm
        kl = torch.where(p_base > 0, p_base * (lp_base - lp_arm), torch.zeros_like(p_base)).sum(-1)
        pick = tokens.unsqueeze(-1)
        kls, counts = _per_conversation(kl, rows, len(idx))
        lpb, _ = _per_conversation(lp_base.gather(-1, pick).squeeze(-1), rows, len(idx))
        lpa, _ = _per_conversation(lp_arm.gather(-1, pick).squeeze(-1), rows, len(idx))
        out.update({i: DriftItem(c, k, b, a) for i, c, k, b, a in zip(idx, counts, kls, lpb, lpa)})
    return [out[i] for i in range(len(conversations))]
