"""Looking at it the way users do: the Prefect UI and the MLflow tracking server's UI of the cluster (conftest
`cluster`: `make deploy`, two workers, `s3ft tracking-server`), in headless Chromium (Debian's `chromium` +
`chromium-driver`, driven by Selenium; nothing downloaded)."""
import json
import os
import shutil
from pathlib import Path

import pytest

from s3ft_cli import ROOT

ARTIFACTS = Path(os.environ.get("S3FT_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "ui"
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


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
def test_browser_sees_the_arms_in_mlflow_and_the_task_runs_in_prefect(cluster, browser):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=cluster["mlflow"])
    exp = client.get_experiment_by_name("s3ft-tiny")
    parent = next(r for r in client.search_runs([exp.experiment_id], "tags.config = 'tiny'", max_results=500)
                  if r.data.tags.get("prefect_flow_run_id") == cluster["a"]["flow_run"]["id"])
    arms = {r.data.tags["arm"]: r for r in client.search_runs(
        [exp.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'", max_results=500) if "arm" in r.data.tags}
    assert set(arms) == {"base", "sft", "s3ft"}
    base = f"{cluster['mlflow']}/#/experiments/{exp.experiment_id}"
    _page_shows(browser, base, ["s3ft-tiny"], "mlflow-experiment")
    for arm, run in arms.items():
        _page_shows(browser, f"{base}/runs/{run.info.run_id}", [f"arm:{arm}", "indomain/accuracy"], f"mlflow-arm-{arm}")
    ids = json.dumps([r.info.run_id for r in arms.values()])
    compare = f"{cluster['mlflow']}/#/compare-runs?runs={ids}&experiments={json.dumps([exp.experiment_id])}"
    # the compare page charts the arms' first metric (drift/kl); its long metric table renders lazily
    _page_shows(browser, compare, ["arm:base", "arm:sft", "arm:s3ft", "drift/kl"], "mlflow-compare")
    # Prefect UI: the deployment's flow run, then its task runs.
    run = cluster["a"]["flow_run"]
    text = _page_shows(browser, f"{cluster['ui']}/runs/flow-run/{run['id']}", [run["name"], "Completed"],
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
