"""Config validation: bad keys and values fail before any work, naming the field and the fix; every
shipped config validates; the config is frozen, seeded from one root seed, and read once."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tasks.core.config_file import load_config
from tasks.core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT_CONFIGS = sorted(p for p in (ROOT / "configs").rglob("*.yaml") if "benchmarks" not in p.parts)


@pytest.mark.parametrize("path", EXPERIMENT_CONFIGS, ids=lambda p: str(p.relative_to(ROOT / "configs")))
def test_every_shipped_config_validates(path):
    cfg = load_config(path)
    assert cfg.seeds and set(cfg.arms) >= {"base"}
    for section in ("data", "generation", "training", "benchmarks", "diagnostics", "drift"):
        explicit = (yaml.safe_load(path.read_text()).get(section) or {}).get("seed")
        assert getattr(cfg, section).seed == (cfg.seed if explicit is None else explicit), section


@pytest.mark.parametrize("override,field,fragment", [
    ("training.learning_rate=abc", "training.learning_rate", "valid number"),
    ("training.foo=1", "training.foo", "unknown key"),
    ("data.train_size=-5", "data.train_size", "greater than 0"),
    ("data.source=nope", "data.source", "unknown data source"),
    ("judge.name=nope", "judge.name", "unknown judge"),
    ("arms=[base,nope]", "arms", "unknown arm"),
    ("model.dtype=int3", "model.dtype", "bfloat16"),
    ("generation.backend=tgi", "generation.backend", "vllm"),
    ("lora.dropout=1.5", "lora.dropout", "less than 1"),
    ("paraphrase.prompt=rewrite {gold}", "paraphrase.prompt", "{question}"),
    ("benchmarks.names=[mmlu,hellaswagg]", "benchmarks.names", "truthfulqa_mc1"),
    ("benchmarks.mmlu_per_subject=0", "benchmarks.mmlu_per_subject", "greater than 0"),
    ("seeds=[1, 1]", "seeds", "once"),
    ("training.lr_scheduler=cosin", "training.lr_scheduler", "cosine"),
])
def test_bad_values_name_the_field(override, field, fragment):
    with pytest.raises(ConfigError) as err:
        load_config(ROOT / "configs/quickstart.yaml", [override])
    message = str(err.value)
    assert field in message and fragment in message


@pytest.mark.parametrize("old,new", [("data.task=gsm8k", "data.source"), ("benchmarks.tasks=[mmlu]", "benchmarks.names"),
                                     ("generation.vllm.enforce_eager=true", "vllm"),
                                     ("benchmarks.max_lora_rank=8", "vllm.max_lora_rank")])
def test_renamed_keys_name_their_new_key(old, new):
    with pytest.raises(ConfigError, match=f"Fix: rename it to {new} "):
        load_config(ROOT / "configs/quickstart.yaml", [old])


def test_every_bad_field_and_every_cross_field_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as err:
        load_config(None, ["training.batch_size=x", "data.source=nope", "lora.dropout=2"])
    assert [line.split(": ")[1] for line in str(err.value).splitlines()] == [
        "data.source", "lora.dropout", "training.batch_size"]
    with pytest.raises(ConfigError) as err:
        load_config(None, ["benchmarks.backend=vllm", "vllm.max_lora_rank=4", "training.accelerate_args=[--cpu]"])
    lines = str(err.value).splitlines()
    assert len(lines) == 2 and "vllm.max_lora_rank" in lines[0] and "training.accelerate_args" in lines[1]


def test_lr_schedulers_are_transformers_schedulers():
    from typing import get_args

    from transformers import SchedulerType

    from tasks.core.settings import LrScheduler

    assert set(get_args(LrScheduler)) <= {s.value for s in SchedulerType}


def test_override_syntax_and_missing_file():
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config(None, ["training.learning_rate"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("configs/nope.yaml")
    with pytest.raises(ConfigError, match="is a value, not a section"):
        load_config(None, ["name=x", "name.sub=1"])


def test_overrides_are_typed():
    cfg = load_config(ROOT / "configs/quickstart.yaml", ["training.learning_rate=1e-4", "data.test_size=null",
                                                         "lora.target_modules=[q_proj]"])
    assert cfg.training.learning_rate == 1e-4 and cfg.data.test_size is None
    assert cfg.lora.target_modules == ["q_proj"]


def test_the_config_is_frozen_after_loading():
    cfg = load_config(ROOT / "configs/quickstart.yaml")
    with pytest.raises(ValueError, match="frozen"):
        cfg.training.learning_rate = 1.0
    with pytest.raises(ValueError, match="frozen"):
        cfg.name = "other"


def test_one_root_seed_feeds_every_section_unless_it_sets_its_own():
    cfg = load_config(None, ["seed=7", "training.seed=3"])
    assert (cfg.data.seed, cfg.generation.seed, cfg.benchmarks.seed, cfg.diagnostics.seed) == (7, 7, 7, 7)
    assert cfg.training.seed == 3 and cfg.seeds == [3]  # the training seeds default to [training.seed]
    assert load_config(None).seeds == [0] and load_config(None, ["seeds=[4, 5]"]).seeds == [4, 5]


def test_a_config_extends_a_base_file(tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "b.yaml").write_text("name: b\ntraining: {learning_rate: 0.5, epochs: 2}\narms: [base, sft]\n")
    (tmp_path / "c.yaml").write_text("extends: base/b.yaml\nname: c\ntraining: {epochs: 3}\n")
    cfg = load_config(tmp_path / "c.yaml")
    assert (cfg.name, cfg.training.learning_rate, cfg.training.epochs, cfg.arms) == ("c", 0.5, 3, ["base", "sft"])
    (tmp_path / "loop.yaml").write_text("extends: loop.yaml\n")
    with pytest.raises(ConfigError, match="loops back"):
        load_config(tmp_path / "loop.yaml")


def test_the_quickstart_is_in_the_own_answer_regime_and_measures_forgetting():
    """NQ with its gold passage (the bundled model answers ~45 %), drift on, MMLU and TruthfulQA (the design
    card's) plus benchmarks the small model passes above chance; the GSM8K setting stays beside it."""
    cfg = load_config(ROOT / "configs/quickstart.yaml")
    assert cfg.model.ref == "bundled:smollm2-135m-instruct" and cfg.arms == ["base", "sft", "s3ft"]
    assert (cfg.data.source, cfg.judge.name) == ("nq", "qa") and cfg.drift.enabled
    names = set(cfg.benchmarks.names)
    assert "mmlu" in names and names & {"truthfulqa_mc1", "truthfulqa_mc2"} and {"arc_easy", "piqa"} <= names
    gsm8k = load_config(ROOT / "configs/gsm8k_quickstart.yaml")
    assert gsm8k.data.source == "gsm8k" and gsm8k.data.train_size >= 200 and gsm8k.data.test_size >= 200


@pytest.mark.parametrize("name, judge", [("gsm8k", "math"), ("mbpp", "code"), ("nq", "qa")])
def test_paper_scale_configs_validate(name, judge):
    cfg = load_config(ROOT / f"configs/{name}.yaml")
    assert (cfg.data.source, cfg.judge.name) == (name, judge)
    assert cfg.model.ref == "mistralai/Mistral-7B-Instruct-v0.2"
    assert (cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout) == (8, 16, 0.1)
    assert cfg.data.train_size is None and cfg.data.test_size is None  # full splits
    assert cfg.generation.backend == "vllm" and cfg.model.dtype == "bfloat16"
    assert cfg.arms == ["base", "sft", "sdft", "s3ft"]  # the paper's Table 2 columns
    b = cfg.benchmarks  # full general benchmarks
    assert (b.names, b.mmlu_per_subject, b.truthfulqa_limit) == (["mmlu", "truthfulqa_mc1", "truthfulqa_mc2"],
                                                                 None, None)
    assert yaml.safe_load((ROOT / f"configs/{name}.yaml").read_text())["extends"] == "base/paper.yaml"


def test_cli_rejects_bad_config_before_any_work(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "flows.cli", "run", str(ROOT / "configs/quickstart.yaml"),
                           "--set", f"output_dir={tmp_path / 'out'}", "--set", "training.epochs=-1"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2
    assert "training.epochs" in proc.stderr and "greater than 0" in proc.stderr
    assert not (tmp_path / "out").exists()  # nothing started


def test_code_configs_paraphrase_into_a_code_block():
    for name in ("mbpp", "mbpp_quickstart"):
        cfg = load_config(ROOT / f"configs/{name}.yaml")
        assert cfg.judge.name == "code" and not cfg.judge.reject_truncated
        assert "{question}" in cfg.paraphrase.prompt and "{gold}" in cfg.paraphrase.prompt
        assert "```python" in cfg.paraphrase.prompt


def test_cli_seeds_flag_sets_the_seed_list(capsys):
    from flows.cli import main

    assert main(["validate", str(ROOT / "configs/quickstart.yaml"), "--set", "training.seed=5", "--seeds", "3"]) == 0
    assert json.loads(capsys.readouterr().out)["seeds"] == [5, 6, 7]
    assert main(["validate", str(ROOT / "configs/quickstart.yaml"), "--seeds", "0"]) == 2
    assert "--seeds 0" in capsys.readouterr().err


def test_the_cli_reads_the_config_once_and_hands_the_flow_the_object(monkeypatch, tmp_path):
    """`s3ft run` validates once and passes the frozen config itself to the flow (no strings re-parsed)."""
    import flows.cli as cli
    import flows.experiment
    import tasks.core.config_file as config_file

    reads, handed = [], {}
    original = config_file.load_config
    monkeypatch.setattr(cli, "load_config", lambda *a, **k: reads.append(a) or original(*a, **k))
    monkeypatch.setattr(cli, "reexec_with_preload", lambda argv: None)
    monkeypatch.setattr(flows.experiment, "experiment", lambda **kw: handed.update(kw) or {})
    monkeypatch.setattr(cli, "_print_summary", lambda summary, cfg: None)
    assert cli.main(["run", str(ROOT / "configs/tiny.yaml"), "--set", f"output_dir={tmp_path}", "--seeds", "2"]) == 0
    assert len(reads) == 1 and set(handed) == {"config", "config_path"}
    assert handed["config"].seeds == [0, 1] and handed["config"].model_config["frozen"]


def test_nq_configs_use_the_two_step_judge():
    for name in ("nq", "quickstart"):
        cfg = load_config(ROOT / f"configs/{name}.yaml")
        assert (cfg.data.source, cfg.judge.name) == ("nq", "qa") and cfg.judge.llm.enabled
        assert cfg.judge.llm.model is None  # the base model judges, as in the paper
    with pytest.raises(ConfigError, match="judge.llm.prompt"):
        load_config(ROOT / "configs/quickstart.yaml", ["judge.llm.prompt=Is {candidate} right?"])


def test_the_preload_never_adds_a_second_openmp_runtime(monkeypatch, tmp_path):
    """vLLM's multiprocess CPU executor refuses to start with both libiomp and libgomp preloaded; vLLM itself puts
    torch's libgomp into LD_PRELOAD of any process that imports it, and children inherit that."""
    from flows import environment

    iomp, tcmalloc = tmp_path / "libiomp5.so", tmp_path / "libtcmalloc_minimal.so.4"
    iomp.write_bytes(b""), tcmalloc.write_bytes(b"")
    monkeypatch.setattr(environment, "_PRELOAD_CANDIDATES", (str(tcmalloc), str(iomp)))
    monkeypatch.delenv("S3FT_NO_PRELOAD", raising=False)
    monkeypatch.delenv("S3FT_PRELOADED", raising=False)
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    assert environment.preload_libraries() == [str(tcmalloc), str(iomp)]
    monkeypatch.setenv("LD_PRELOAD", "/x/torch/lib/libgomp-a34b3233.so.1")
    assert environment.preload_libraries() == [str(tcmalloc)]
