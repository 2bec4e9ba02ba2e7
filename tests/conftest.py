import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MIRROR = Path(os.environ.get("S3FT_DATA_MIRROR", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def mirror() -> Path:
    if not (MIRROR / "gsm8k" / "train.jsonl").is_file():
        pytest.skip(f"no data mirror at {MIRROR} (set S3FT_DATA_MIRROR)")
    return MIRROR


@pytest.fixture(scope="session")
def bundled_tokenizer():
    """The bundled SmolLM2 tokenizer, read straight from its GGUF (no weights)."""
    from transformers import AutoTokenizer

    from tasks.engines.models import bundled_gguf

    gguf = bundled_gguf("smollm2-135m-instruct")
    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, bundled_tokenizer) -> Path:
    """A tiny random llama with the bundled tokenizer: real code paths, seconds not minutes."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(bundled_tokenizer), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=1024, tie_word_embeddings=True)
    out = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(out)
    bundled_tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def bundled_model_dir(tmp_path_factory) -> Path:
    """The bundled SmolLM2 converted to a transformers folder (once per test session)."""
    from tasks.engines.models import bundled_gguf, convert_gguf

    return convert_gguf(bundled_gguf("smollm2-135m-instruct"), tmp_path_factory.mktemp("smollm2") / "model")


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """One real Prefect server on 127.0.0.1 for the tests that run `s3ft` many times (no ephemeral server
    start per command) and for the deployment test; yields (API URL, PREFECT_HOME)."""
    from s3ft_cli import free_port, prefect_env, prefect_server_argv, start_server, stop_server

    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    server = start_server(prefect_server_argv(port), prefect_env(home, api), f"{api}/health", home / "server.log")
    yield api, home
    stop_server(server)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory, tiny_model_dir, mirror, prefect_server):
    """Worker A, then worker B, each in a checkout of its own, run the tiny deployment with the same parameters on
    one shared store, tracked by one MLflow server (tests/cluster.py); A trains each arm as two DDP processes
    (accelerate). The tiny random model (transformers generation) keeps it short: tests/test_flow.py runs the
    whole flow on the bundled model."""
    import httpx

    from cluster import checkout, deploy_all, run_on_worker, tracking_server
    from s3ft_cli import stop_server

    api, home = prefect_server
    tmp = tmp_path_factory.mktemp("cluster")
    mlflow_url, mlflow_server = tracking_server(tmp / "tracking")
    env = dict(os.environ, PREFECT_HOME=str(home), PREFECT_API_URL=api, PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_WORKER_QUERY_SECONDS="2", S3FT_DATA_MIRROR=str(mirror), PYTHONUNBUFFERED="1",
               MLFLOW_TRACKING_URI=mlflow_url)
    store = tmp / "shared-store"
    params = {"config_path": "configs/tiny.yaml",
              "overrides": [f"model.ref={tiny_model_dir}", "generation.backend=hf", f"store.uri={store}",
                            "training.launcher=accelerate", 'training.accelerate_args=[--multi_gpu, --num_processes, "2"]']}
    try:
        deploy_all(env)
        client = httpx.Client(base_url=api, timeout=30)
        machines = {}
        for name in ("a", "b"):
            folder = checkout(tmp / f"machine-{name}")
            machines[name] = {"home": folder, "flow_run": run_on_worker(client, "tiny", params, folder, env,
                                                                         tmp / f"worker-{name}.log")}
        yield {"api": api, "ui": api.removesuffix("/api"), "client": client, "mlflow": mlflow_url, "store": store,
               "model": str(tiny_model_dir), **machines}
    finally:
        stop_server(mlflow_server)
