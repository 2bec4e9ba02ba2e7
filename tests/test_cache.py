"""Content addressing: keys follow content and the config subset a stage uses, not locations."""
from tasks.cache import stage_key
from tasks.config import load_config
from tasks.records import Artifact


def _art(sha, path="/a"):
    return Artifact(path=path, sha256=sha)


def test_key_depends_on_content_not_location():
    a = stage_key("generate", {"examples": _art("x", "/one"), "max_new_tokens": 8, "store": "/s1"})
    b = stage_key("generate", {"examples": _art("x", "/two"), "max_new_tokens": 8, "store": "/s2"})
    c = stage_key("generate", {"examples": _art("y"), "max_new_tokens": 8, "store": "/s1"})
    d = stage_key("generate", {"examples": _art("x"), "max_new_tokens": 9, "store": "/s1"})
    assert a == b and len({a, c, d}) == 3


def test_training_hyperparameter_only_changes_training_keys():
    base = load_config(None)
    changed = load_config(None, ["training.learning_rate=1e-3"])
    gen = lambda cfg: stage_key("generate", {"settings": cfg.generation, "max_new_tokens": 8})
    train = lambda cfg: stage_key("train", {"settings": cfg.training, "lora": cfg.lora})
    assert gen(base) == gen(changed)
    assert train(base) != train(changed)
