"""Operating it the way users do: a Prefect server on 127.0.0.1, `prefect deploy --all` from prefect.yaml, a
process worker, a flow run triggered through the API for the tiny config; then the Prefect UI and the MLflow UI
in headless Chromium (Debian's `chromium` + `chromium-driver`, driven by Selenium; nothing downloaded)."""
import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml

from s3ft_cli import ROOT

ARTIFACTS = Path(os.environ.get("S3FT_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "ui"
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def test_prefect_yaml_has_a_deployment_per_config_and_a_paused_schedule():
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    configs = {d["parameters"]["config_path"] for d in spec["deployments"]}
    assert configs == {f"configs/{p.name}" for p in (ROOT / "configs").glob("*.yaml")}
    assert {d["work_pool"]["name"] for d in spec["deployments"]} == {"s3ft-local"}
    schedules = [s for d in spec["deployments"] for s in d.get("schedules", [])]
    assert schedules and all(s["active"] is False and s["cron"] for s in schedules)
    assert all(d["entrypoint"] == "flows/experiment.py:experiment" for d in spec["deployments"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} did not answer in {timeout} s")


def _start(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, 9)


@pytest.fixture(scope="module")
def deployed_run(tmp_path_factory, tiny_model_dir, mirror, prefect_server):
    """Work pool, `prefect deploy --all`, a worker, and the tiny deployment run through the API.

    The run's overrides swap in a tiny random model (transformers generation): this test is about the
    deployment, the worker and the UIs; tests/test_flow.py runs the whole flow on the bundled model."""
    api, home = prefect_server
    out = tmp_path_factory.mktemp("deployed-runs")
    env = dict(os.environ, PREFECT_HOME=str(home), PREFECT_API_URL=api, PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_WORKER_QUERY_SECONDS="2", S3FT_DATA_MIRROR=str(mirror), PYTHONUNBUFFERED="1")
    env.pop("MLFLOW_TRACKING_URI", None)
    prefect = str(Path(os.sys.executable).parent / "prefect")
    worker = None
    try:
        for args in (["work-pool", "create", "s3ft-local", "--type", "process"], ["--no-prompt", "deploy", "--all"]):
            proc = subprocess.run([prefect, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
            assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        worker = _start([prefect, "worker", "start", "--pool", "s3ft-local"], env, out / "worker.log")
        client = httpx.Client(base_url=api, timeout=30)
        deployment = client.get("/deployments/name/s3ft-experiment/tiny").raise_for_status().json()
        params = {"config_path": "configs/tiny.yaml",
                  "overrides": [f"output_dir={out}", f"model.ref={tiny_model_dir}", "generation.backend=hf"]}
        flow_run = client.post(f"/deployments/{deployment['id']}/create_flow_run",
                               json={"parameters": params}).raise_for_status().json()
        deadline = time.monotonic() + 1200
        while (state := client.get(f"/flow_runs/{flow_run['id']}").json()["state"])["type"] not in (
                "COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            assert time.monotonic() < deadline, "the deployment's flow run did not finish"
            time.sleep(2)
        assert state["type"] == "COMPLETED", (out / "worker.log").read_text()[-5000:]
        yield {"api": api, "ui": api.removesuffix("/api"), "client": client, "flow_run": flow_run, "out": out,
               "deployment": deployment, "model": str(tiny_model_dir)}
    finally:
        if worker is not None:
            _stop(worker)


@pytest.mark.slow
def test_deploy_all_registers_every_deployment_and_the_api_run_completes(deployed_run):
    client = deployed_run["client"]
    names = {d["name"] for d in client.post("/deployments/filter", json={}).json()}
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    assert names == {d["name"] for d in spec["deployments"]}
    quick = client.get("/deployments/name/s3ft-experiment/quickstart").json()
    schedules = client.get(f"/deployments/{quick['id']}/schedules").json()
    assert [(s["schedule"]["cron"], s["active"]) for s in schedules] == [("0 3 * * *", False)]
    assert quick["work_pool_name"] == "s3ft-local"
    # The run wrote a complete experiment where its overrides said, with the tiny config's arms.
    summary = json.loads(next(deployed_run["out"].glob("tiny/*/summary.json")).read_text())
    assert [r["arm"] for r in summary["results"]] == ["base", "sft", "s3ft"]
    tasks = client.post("/task_runs/filter", json={"flow_runs": {"id": {"any_": [deployed_run["flow_run"]["id"]]}}}).json()
    assert {t["state"]["type"] for t in tasks} == {"COMPLETED"} and len(tasks) == len(summary["stages"])


@pytest.mark.slow
def test_runs_are_tagged_for_comparison_and_adapters_registered(deployed_run):
    import mlflow

    out = deployed_run["out"]
    mlflow.set_tracking_uri(f"sqlite:///{out / 'mlflow.db'}")
    exp = mlflow.get_experiment_by_name("s3ft-tiny")
    runs = mlflow.search_runs([exp.experiment_id], "tags.config = 'tiny'", output_format="list")
    assert runs and all(r.data.tags.get(k) for r in runs for k in ("git_commit", "data_hash", "source", "model"))
    arms = {r.data.tags["arm"]: r for r in runs if "arm" in r.data.tags}
    assert set(arms) == {"base", "sft", "s3ft"} and {r.data.tags["seed"] for a, r in arms.items() if a != "base"} == {"0"}
    # The compare view lines arms up: the same metric and param names in every arm's run.
    assert len({frozenset(r.data.metrics) - {"train/loss"} for r in arms.values()}) == 1
    assert len({frozenset(r.data.params) for r in arms.values()}) == 1
    client = mlflow.MlflowClient()
    for arm in ("sft", "s3ft"):
        (version,) = client.search_model_versions(f"name = 's3ft-tiny-{arm}'")
        assert version.run_id == arms[arm].info.run_id and version.source.endswith("/adapter")
        assert version.tags["base_model"] == deployed_run["model"] and version.tags["arm"] == arm
        assert (Path(version.source.removeprefix("file://")) / "adapter_config.json").is_file()


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never download a browser or driver
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1500,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


def _page_shows(driver, url: str, texts: list[str], shot: str, timeout: float = 90) -> str:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    try:
        WebDriverWait(driver, timeout, poll_frequency=0.5).until(
            lambda d: all(t in d.find_element(By.TAG_NAME, "body").text for t in texts))
    finally:
        driver.save_screenshot(str(ARTIFACTS / f"{shot}.png"))
    return driver.find_element(By.TAG_NAME, "body").text


@pytest.mark.slow
def test_browser_sees_the_arms_in_mlflow_and_the_task_runs_in_prefect(deployed_run, browser, tmp_path):
    import mlflow

    out = deployed_run["out"]
    mlflow.set_tracking_uri(f"sqlite:///{out / 'mlflow.db'}")
    exp = mlflow.get_experiment_by_name("s3ft-tiny")
    arms = {r.data.tags["arm"]: r for r in mlflow.search_runs([exp.experiment_id], "tags.config = 'tiny'",
                                                               output_format="list") if "arm" in r.data.tags}
    assert set(arms) == {"base", "sft", "s3ft"}
    port = _free_port()
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    ui = _start([str(Path(os.sys.executable).parent / "mlflow"), "ui", "--backend-store-uri",
                 f"sqlite:///{out / 'mlflow.db'}", "--host", "127.0.0.1", "--port", str(port)], env, tmp_path / "mlflow.log")
    try:
        _wait_http(f"http://127.0.0.1:{port}/health")
        base = f"http://127.0.0.1:{port}/#/experiments/{exp.experiment_id}"
        _page_shows(browser, base, ["s3ft-tiny"], "mlflow-experiment")
        for arm, run in arms.items():
            _page_shows(browser, f"{base}/runs/{run.info.run_id}", [f"arm:{arm}", "indomain/accuracy"], f"mlflow-arm-{arm}")
        ids = json.dumps([r.info.run_id for r in arms.values()])
        compare = f"http://127.0.0.1:{port}/#/compare-runs?runs={ids}&experiments={json.dumps([exp.experiment_id])}"
        # the compare page charts the arms' first metric (drift/kl); its long metric table renders lazily
        _page_shows(browser, compare, ["arm:base", "arm:sft", "arm:s3ft", "drift/kl"], "mlflow-compare")
    finally:
        _stop(ui)
    # Prefect UI: the deployment's flow run, then its task runs.
    run = deployed_run["flow_run"]
    text = _page_shows(browser, f"{deployed_run['ui']}/runs/flow-run/{run['id']}", [run["name"], "Completed"],
                       "prefect-flow-run")
    assert "s3ft-experiment" in text
    from selenium.webdriver.common.by import By

    from selenium.webdriver.support.ui import WebDriverWait

    innermost = "//*[contains(normalize-space(.), 'Task Runs') and not(*[contains(normalize-space(.), 'Task Runs')])]"
    tab = [e for e in browser.find_elements(By.XPATH, innermost) if e.is_displayed()]
    assert tab, "no Task Runs tab on the flow run page"
    tab[0].click()

    WebDriverWait(browser, 60).until(lambda d: "generate-" in d.find_element(By.TAG_NAME, "body").text
                                     and "train-" in d.find_element(By.TAG_NAME, "body").text)
    browser.save_screenshot(str(ARTIFACTS / "prefect-task-runs.png"))
