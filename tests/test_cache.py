"""Content addressing: keys follow content and the settings a stage's output depends on, computed from the
very inputs the flow passes (flows/dag.py), not from hand-made parameter dicts."""
import pytest

from flows.answering import Model, generate_inputs
from flows.dag import train_inputs
from tasks.core.config_file import load_config
from tasks.core.records import Artifact
from tasks.generate import generate
from tasks.train import train

BASE = Model(Artifact(path="/models/base", sha256="m0"), "bundled:smollm2-135m-instruct")
EXAMPLES = Artifact(path="/store/load_examples/x/examples.jsonl", sha256="e0")
TARGETS = Artifact(path="/store/targets/y/targets.jsonl", sha256="t0")


def _keys(*overrides: str) -> tuple[str, str]:
    """(generate key of the train split, train key of one arm) for the quickstart with `overrides`."""
    cfg = load_config("configs/quickstart.yaml", list(overrides))
    return (generate.key(**generate_inputs(cfg, BASE, EXAMPLES, cfg.generation.max_new_tokens)),
            train.key(**train_inputs(cfg, BASE, TARGETS, cfg.training.seed)))


def test_keys_depend_on_content_not_location():
    cfg = load_config("configs/quickstart.yaml")
    moved = Model(Artifact(path="/elsewhere/base", sha256="m0"), BASE.ref)
    other = Model(Artifact(path="/models/base", sha256="m1"), BASE.ref)
    key = lambda model: generate.key(**generate_inputs(cfg, model, EXAMPLES, 8))
    assert key(BASE) == key(moved) != key(other)
    assert key(BASE) != generate.key(**generate_inputs(cfg, BASE, EXAMPLES, 9))


def test_a_training_hyperparameter_changes_training_keys_only():
    gen, tr = _keys()
    gen2, tr2 = _keys("training.learning_rate=1e-3")
    assert gen == gen2 and tr != tr2


@pytest.mark.parametrize("runtime", ["training.threads=1", "training.save_steps=7", "training.launcher=accelerate",
                                     "data.mirror=/somewhere/else"])
def test_settings_that_cannot_change_training_keep_its_key(runtime):
    assert _keys(runtime) == _keys()


@pytest.mark.parametrize("runtime", ["generation.shard_size=3", "vllm.kv_cache_gib=2", "vllm.max_lora_rank=64",
                                     "vllm.gpu_memory_utilization=0.5"])
def test_settings_that_cannot_change_generation_keep_its_key(runtime):
    assert _keys(runtime) == _keys()


def test_auto_is_resolved_before_hashing():
    """`generation.backend: auto` hashes as the backend it becomes here, so naming that backend is a hit."""
    resolved = load_config("configs/quickstart.yaml").generation.resolved().backend
    assert resolved in ("vllm", "hf")
    assert _keys("generation.backend=auto") == _keys(f"generation.backend={resolved}")
    assert _keys("generation.backend=auto")[0] != _keys(f"generation.backend={'hf' if resolved == 'vllm' else 'vllm'}")[0]


def test_engine_settings_enter_a_key_only_when_that_engine_runs():
    hf = ("generation.backend=hf",)
    assert _keys(*hf, "vllm.max_model_len=4096") == _keys(*hf)  # vLLM's settings: not hf generation's
    assert _keys("generation.backend=vllm", "vllm.max_model_len=4096") != _keys("generation.backend=vllm")
    assert _keys("generation.backend=vllm", "generation.hf_batch_size=3") == _keys("generation.backend=vllm")
    assert _keys(*hf, "generation.hf_batch_size=3") != _keys(*hf)


def test_stage_versions_and_names_are_declared_once_on_the_stage():
    import importlib
    import pkgutil

    import tasks

    contracts = {}
    for info in pkgutil.iter_modules(tasks.__path__):
        if info.ispkg:
            continue
        stages = [v for v in vars(importlib.import_module(f"tasks.{info.name}")).values() if hasattr(v, "contract")]
        assert len(stages) == 1 and stages[0].contract.name == info.name, info.name
        contracts[info.name] = stages[0].contract
    assert len(contracts) >= 13 and all(c.version for c in contracts.values())


def test_stop_settings_key_the_task_answers_only_and_their_absence_keeps_old_keys():
    from flows.answering import NO_STOPS

    plain = load_config("configs/quickstart.yaml")
    assert "stop" not in plain.generation.key_dump() and "repetition_stop" not in plain.generation.key_dump()
    assert _keys("generation.stop=[]") == _keys()  # no stop = the key every run before the setting had
    stopped = ["generation.stop=['\\n\\n']", "generation.repetition_stop={max_pattern: 16, min_count: 3}"]
    for setting in stopped:
        assert _keys(setting)[0] != _keys()[0] and _keys(setting)[1] == _keys()[1]
        cfg = load_config("configs/quickstart.yaml", [setting])
        # The LLM judge's and drift's generations keep their keys: the task's stops are not theirs.
        assert generate.key(**generate_inputs(cfg, BASE, EXAMPLES, 12, **NO_STOPS)) == \
            generate.key(**generate_inputs(plain, BASE, EXAMPLES, 12, **NO_STOPS))


def test_a_repetition_stop_with_its_patterns_out_of_order_is_refused():
    from tasks.core.settings import RepetitionStop

    with pytest.raises(ValueError, match="min_pattern 8 exceeds max_pattern 4"):
        RepetitionStop(max_pattern=4, min_pattern=8)
    with pytest.raises(ValueError):
        RepetitionStop(max_pattern=4, min_count=1)


def _sampling_key(*overrides: str) -> str:
    cfg = load_config("configs/quickstart.yaml", list(overrides))
    return generate.key(**generate_inputs(cfg, BASE, EXAMPLES, 64, samples=cfg.generation.samples,
                                          temperature=cfg.generation.sample_temperature))


def test_sampling_settings_key_the_sampling_stage_only_and_its_seed_is_in_the_key():
    # adding k-sample arms leaves the greedy answers' key (and every run's before the settings existed) as it was
    assert _keys("generation.samples=4", "generation.sample_temperature=1.0", "arms=[base,sft,s3ft,rft,s3ft_k]") == _keys()
    k4 = _sampling_key("generation.samples=4")
    assert k4 != _sampling_key("generation.samples=8") != _sampling_key("generation.samples=4", "generation.seed=1")
    assert k4 != _sampling_key("generation.samples=4", "generation.sample_temperature=1.0")
    assert k4 != _sampling_key("generation.samples=4", "seed=1")  # the root seed feeds generation.seed
    assert k4 != _keys()[0]


def test_rft_settings_key_only_the_arm_that_reads_them():
    from tasks.core.config import ExperimentConfig
    from tasks.methods.strategies import get_strategy

    assert [a for a in ("sft", "s3ft", "sdft", "ssr", "rft", "s3ft_k") if get_strategy(a).reads_settings] == ["rft"]
    cfg = ExperimentConfig(judge={"name": "math"}, rft={"dedupe": "auto"})
    assert cfg.rft.for_judge(cfg.judge.name).dedupe == "equations"
    assert cfg.rft.for_judge("qa").dedupe == "text" and cfg.rft.model_copy(update={"dedupe": "text"}).for_judge(
        "math").dedupe == "text"


def test_sampling_arms_need_k_of_two_or_more():
    with pytest.raises(ValueError, match=r"generation.samples: arms \['rft'\].*Fix: set generation.samples to 2"):
        load_config("configs/quickstart.yaml", ["arms=[base,rft]"])
    assert load_config("configs/methods_quickstart.yaml").generation.samples == 4
