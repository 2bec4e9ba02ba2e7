"""Scale-out that runs: prefect.yaml's pools and deployments registered on a Prefect server, two process workers in
checkouts of their own sharing one store (`store.uri`), one MLflow tracking server (conftest `cluster`)."""
import json
from pathlib import Path

import pytest
import yaml

from cluster import pools
from s3ft_cli import ROOT
from tasks.core.config_file import load_config

SPEC = yaml.safe_load((ROOT / "prefect.yaml").read_text())


def test_prefect_yaml_has_a_deployment_per_config_a_paused_schedule_and_gpu_pools():
    configs = {d["parameters"]["config_path"] for d in SPEC["deployments"]}
    assert configs == {f"configs/{p.name}" for p in (ROOT / "configs").glob("*.yaml")}
    assert pools() == ["s3ft-gpu-1x", "s3ft-gpu-4x", "s3ft-local"]
    schedules = [s for d in SPEC["deployments"] for s in d.get("schedules", [])]
    assert schedules and all(s["active"] is False and s["cron"] for s in schedules)
    assert all(d["entrypoint"] == "flows/experiment.py:experiment" for d in SPEC["deployments"])
    # a run changes to the checkout of the worker that picks it up
    assert SPEC["pull"][-1] == {"prefect.deployments.steps.set_working_directory": {"directory": "{{ $S3FT_CHECKOUT }}"}}
    for d in SPEC["deployments"]:  # every deployment's parameters make a valid config
        cfg = load_config(ROOT / d["parameters"]["config_path"], d["parameters"]["overrides"])
        if d["work_pool"]["name"].startswith("s3ft-gpu"):
            assert cfg.model.ref.startswith("mistralai/") and "env" in d["work_pool"]["job_variables"]
        if d["work_pool"]["name"] == "s3ft-gpu-4x":
            assert cfg.vllm.tensor_parallel_size == 4 and cfg.training.launcher == "accelerate"
            assert cfg.training.accelerate_args == ["--multi_gpu", "--num_processes", "4"]
            one_gpu = load_config(ROOT / d["parameters"]["config_path"]).training  # the same experiment's batch
            assert cfg.training.batch_size * cfg.training.grad_accum * 4 == one_gpu.batch_size * one_gpu.grad_accum


def test_a_worker_without_its_checkout_gets_the_fix_from_the_pull_step(monkeypatch, tmp_path):
    import asyncio

    from prefect.deployments.steps.utility import run_shell_script

    (check,) = [step["prefect.deployments.steps.run_shell_script"] for step in SPEC["pull"][:-1]]
    monkeypatch.delenv("S3FT_CHECKOUT", raising=False)
    with pytest.raises(RuntimeError, match="S3FT_CHECKOUT='' is not this worker's s3ft checkout.*Fix: start the worker"):
        asyncio.run(run_shell_script(**check))
    monkeypatch.setenv("S3FT_CHECKOUT", str(tmp_path))  # a folder, but not a checkout
    with pytest.raises(RuntimeError, match="is not this worker's s3ft checkout"):
        asyncio.run(run_shell_script(**check))
    monkeypatch.setenv("S3FT_CHECKOUT", str(ROOT))
    asyncio.run(run_shell_script(**check))


def _summary(home: Path) -> dict:
    (path,) = home.glob("runs/tiny/*/summary.json")  # the relative output_dir resolved in the worker's checkout
    return json.loads(path.read_text())


@pytest.mark.slow
def test_deploy_registers_every_deployment_on_its_pool_with_the_pull_step_unresolved(cluster):
    client = cluster["client"]
    deployments = {d["name"]: d for d in client.post("/deployments/filter", json={}).json()}
    assert {n: d["work_pool_name"] for n, d in deployments.items()} == {
        d["name"]: d["work_pool"]["name"] for d in SPEC["deployments"]}
    assert deployments["tiny"]["pull_steps"] == SPEC["pull"]  # S3FT_CHECKOUT is read when a run starts
    schedules = client.get(f"/deployments/{deployments['quickstart']['id']}/schedules").json()
    assert [(s["schedule"]["cron"], s["active"]) for s in schedules] == [("0 3 * * *", False)]


@pytest.mark.slow
def test_a_second_worker_in_another_checkout_reuses_every_stage_of_the_shared_store(cluster):
    a, b = _summary(cluster["a"]["home"]), _summary(cluster["b"]["home"])
    assert [r["arm"] for r in a["results"]] == ["base", "sft", "s3ft"]
    # a new store: A computed every stage, or reused one it computed itself (random-model s3ft trains on gold, as sft)
    computed = {s["path"] for s in a["stages"] if not s["cached"]}
    assert computed and all(s["path"] in computed for s in a["stages"])
    assert all(s["cached"] for s in b["stages"]) and len(b["stages"]) == len(a["stages"])
    assert [(s["stage"], s["path"], s["sha256"]) for s in b["stages"]] == [
        (s["stage"], s["path"], s["sha256"]) for s in a["stages"]]
    store = cluster["store"] / "store"
    # every stage's files lie in the shared store (a local model folder is used where it is)
    assert all(Path(s["path"]).is_relative_to(store) or s["path"] == cluster["model"] for s in a["stages"])
    for machine in ("a", "b"):  # each checkout holds its run folder, never a store of its own
        assert not {"store", "prefect-results", "locks"} & {p.name for p in (cluster[machine]["home"] / "runs").iterdir()}
    assert a["results"] == b["results"]
    for s in a["stages"]:  # the deployment's parameters trained every arm as two processes (DDP over gloo)
        if s["stage"].startswith("train:"):
            assert json.loads((Path(s["path"]).parent / "train_log.json").read_text())["world_size"] == 2
    client = cluster["client"]
    for machine, summary in (("a", a), ("b", b)):
        flow_run = cluster[machine]["flow_run"]["id"]
        tasks = client.post("/task_runs/filter", json={"flow_runs": {"id": {"any_": [flow_run]}}}).json()
        names = sorted(t["state"]["name"] for t in tasks)
        assert names == sorted("Cached" if s["cached"] else "Completed" for s in summary["stages"])


@pytest.mark.slow
def test_the_tracking_server_holds_both_runs_their_artifacts_and_one_adapter_version_per_arm(cluster, tmp_path):
    from mlflow import MlflowClient
    from mlflow.artifacts import download_artifacts

    client = MlflowClient(tracking_uri=cluster["mlflow"])
    exp = client.get_experiment_by_name("s3ft-tiny")
    assert exp.artifact_location.startswith("mlflow-artifacts:")  # artifacts go through the server, over HTTP
    runs = client.search_runs([exp.experiment_id], "tags.config = 'tiny'", max_results=500)
    parents = {r.data.tags["prefect_flow_run_id"]: r.info.run_id for r in runs if "prefect_flow_run_id" in r.data.tags}
    assert set(parents) == {cluster["a"]["flow_run"]["id"], cluster["b"]["flow_run"]["id"]}
    by_parent = {m: [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[cluster[m]["flow_run"]["id"]]]
                 for m in ("a", "b")}
    arms = {m: {r.data.tags["arm"]: r for r in rs if "arm" in r.data.tags} for m, rs in by_parent.items()}
    assert set(arms["a"]) == set(arms["b"]) == {"base", "sft", "s3ft"}
    for arm in arms["a"]:
        assert arms["a"][arm].data.metrics["indomain/accuracy"] == arms["b"][arm].data.metrics["indomain/accuracy"]
    # B's stage runs (cache hits) point at the very files A's stage runs logged
    stage_paths = {m: {r.info.run_name: r.data.params["artifact.path"] for r in rs if "stage" in r.data.tags}
                   for m, rs in by_parent.items()}
    assert stage_paths["a"] == stage_paths["b"] and stage_paths["a"]
    store_adapters = {s["stage"]: Path(s["path"]) for s in _summary(cluster["a"]["home"])["stages"]}
    for arm in ("sft", "s3ft"):
        (version,) = client.search_model_versions(f"name = 's3ft-tiny-{arm}'")  # B's hits add no version
        assert version.run_id == arms["a"][arm].info.run_id and version.tags["base_model"] == cluster["model"]
        local = Path(download_artifacts(artifact_uri=version.source, dst_path=str(tmp_path / arm),
                                        tracking_uri=cluster["mlflow"]))
        stored = store_adapters[f"train:{arm}"]
        assert (local / "adapter_model.safetensors").read_bytes() == (stored / "adapter_model.safetensors").read_bytes()


@pytest.mark.slow
def test_arm_runs_are_tagged_and_named_alike_for_the_compare_view(cluster):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=cluster["mlflow"])
    exp = client.get_experiment_by_name("s3ft-tiny")
    runs = client.search_runs([exp.experiment_id], "tags.config = 'tiny'", max_results=500)
    assert runs and all(r.data.tags.get(k) for r in runs for k in ("git_commit", "data_hash", "source", "model"))
    arms = [r for r in runs if "arm" in r.data.tags]
    assert {r.data.tags["arm"] for r in arms} == {"base", "sft", "s3ft"}
    assert {r.data.tags["seed"] for r in arms if r.data.tags["arm"] != "base"} == {"0"}
    # the compare view lines arms up: the same metric and param names in every arm's run
    assert len({frozenset(r.data.metrics) - {"train/loss"} for r in arms}) == 1
    assert len({frozenset(r.data.params) for r in arms}) == 1


def test_make_deploy_creates_the_pools_the_deployments_name():
    makefile = (ROOT / "Makefile").read_text()
    line = next(l for l in makefile.splitlines() if l.startswith("POOLS :="))
    assert sorted(line.split(":=")[1].split()) == pools()
