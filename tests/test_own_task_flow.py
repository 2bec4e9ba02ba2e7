"""Your own task end to end on the bundled model: `s3ft preview`, a whole run on a CSV with its own columns and
an all-cache-hit re-run, and `s3ft export` of its s3ft arm (tests/test_own_task.py has the unit tests)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from test_own_task import ROOT, _config, shop_module
from tasks.core.records import Example
from tasks.data.custom import read_configured


@pytest.fixture(scope="module")
def shop_csv(tmp_path_factory) -> Path:
    return shop_module().write(tmp_path_factory.mktemp("own-flow") / "shop.csv", 60)


def _preview(csv: Path, *more: str) -> str:
    args = [sys.executable, "-m", "flows.cli", "preview", "configs/examples/shop_arithmetic.yaml", "-n", "2",
            "--set", f"data.path={csv}"]
    for item in more:
        args += ["--set", item]
    proc = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
def test_preview_shows_fields_prompts_lengths_and_warns_when_the_judge_rejects_gold(shop_csv):
    out = _preview(shop_csv)
    assert "fields: question=None answer='total' id='uid'" in out and "shop.csv" in out
    assert out.count(">>> gold: ") == 2 and "<|im_start|>user" in out  # the chat template applied
    tokens = next(line for line in out.splitlines() if line.startswith("tokens: prompts max"))
    assert 30 < int(tokens.split()[3]) < 80 and "training.max_seq_len 512: 0 cut" in tokens  # system + question
    n_train = len(read_configured(_config(shop_csv).data, "train", 64, 0))
    assert f"judge numeric: accepts {n_train} of {n_train} gold answers" in out and "WARNING" not in out
    bad = _preview(shop_csv, "data.fields.answer=name")
    assert f"accepts 0 of {n_train}" in bad and "WARNING: judge.name" in bad and "allow_gold_failures" in bad


TINY_OWN = ["data.train_size=6", "data.test_size=4", "generation.max_new_tokens=32", "paraphrase.max_new_tokens=32",
            "evaluation.max_new_tokens=32", "judge.reject_truncated=false", "training.max_steps=2",
            "training.batch_size=2", "benchmarks.names=[]", "drift.prompts=4", "drift.max_new_tokens=8",
            "diagnostics.familiarity_max_per_source=2", "tracking.experiment=s3ft-own"]


def _own_run(out: Path, csv: Path, server) -> dict:
    from s3ft_cli import run_s3ft, summary_of

    return summary_of(run_s3ft(out, "bundled:smollm2-135m-instruct", [f"data.path={csv}", *TINY_OWN],
                               config="configs/examples/shop_arithmetic.yaml", server=server))


@pytest.fixture(scope="module")
def own_run(shop_csv, tmp_path_factory, prefect_server) -> tuple[dict, Path]:
    """The worked example at tiny sizes on the bundled model: (summary.json, output folder)."""
    out = tmp_path_factory.mktemp("own-run")
    return _own_run(out, shop_csv, prefect_server), out


@pytest.mark.slow
def test_a_whole_run_on_your_own_csv_then_an_identical_rerun_is_all_cache_hits(own_run, shop_csv, prefect_server):
    from s3ft_cli import recomputed
    from tasks.core.records import Verdict, read_jsonl

    first, out = own_run
    stage = {s["stage"]: s for s in first["stages"]}
    examples = read_jsonl(Path(stage["load_examples:train"]["path"]), Example)
    rows = {r["uid"]: r for r in shop_module().rows(60)}
    for e in examples:  # the CSV's columns, through the template, and its `total` as gold
        row = rows[e.id.removeprefix("file-train-")]
        assert e.gold == row["total"] and e.prompt_messages[-1]["content"].startswith(f"{row['name']} had {row['start']}")
    verdicts = read_jsonl(Path(stage["judge:train"]["path"]), Verdict)
    assert len(verdicts) == 6 and {v.judge for v in verdicts} == {"numeric"}
    assert {"train:sft", "train:s3ft", "generate:test:s3ft"} <= set(stage)
    again = _own_run(out, shop_csv, prefect_server)
    assert recomputed(again) == set() and again["generations_performed"] == 0


@pytest.mark.slow
def test_export_gives_a_model_that_generates_what_the_pipeline_generated(own_run, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from flows.export import export
    from tasks.core.records import Generation, read_jsonl
    from tasks.core.settings import VllmSettings
    from tasks.engines.backends import Sampling, VllmBackend

    summary, _ = own_run
    stage = {s["stage"]: s for s in summary["stages"]}
    merged = export(Path(summary["run_dir"]), "s3ft", tmp_path / "merged")
    card = (merged / "README.md").read_text()
    assert "arm `s3ft` (merged)" in card and "bundled:smollm2-135m-instruct" in card and "| s3ft |" in card
    assert {"model.safetensors", "config.json", "tokenizer.json", "generation_config.json"} <= {p.name for p in merged.iterdir()}
    examples = read_jsonl(Path(stage["load_examples:test"]["path"]), Example)
    pipeline = {g.example_id: g.text for g in read_jsonl(Path(stage["generate:test:s3ft"]["path"]), Generation)}
    dtype = summary["dtype"]  # the run's generation dtype (`auto`: bfloat16 on a CPU with avx512_bf16)
    assert f"generated in `{dtype}`" in card
    engine = VllmBackend(merged, dtype, VllmSettings(), seed=0)  # vLLM loads it, as the pipeline's engine
    texts = [c.text for c in engine.generate([e.prompt_messages for e in examples], Sampling(max_new_tokens=32))]
    engine.close()
    assert texts == [pipeline[e.id] for e in examples]
    tok = AutoTokenizer.from_pretrained(merged)
    ids = tok.apply_chat_template(examples[0].prompt_messages, add_generation_prompt=True, return_tensors="pt",
                                  return_dict=True)["input_ids"]
    outs = [AutoModelForCausalLM.from_pretrained(m, dtype=torch.float32).generate(ids, max_new_tokens=12, do_sample=False)
            for m in (merged, Path(stage["merge:s3ft"]["path"]))]
    assert torch.equal(outs[0], outs[1])  # transformers loads it: the same greedy tokens as the store's model
    adapter = export(Path(summary["run_dir"]), "s3ft", tmp_path / "adapter", kind="adapter")
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert Path(config["base_model_name_or_path"]) == Path(stage["prepare_model"]["path"])  # a bundled base
    assert (adapter / "adapter_model.safetensors").is_file() and "(adapter)" in (adapter / "README.md").read_text()



