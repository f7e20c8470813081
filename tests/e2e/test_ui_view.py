"""The kbatch UI view in a real browser (Debian's headless Chromium, driven by Selenium) against
the shared deployment's real api-server.

One DAG run: a 1,000-index stage whose indexes 3, 17 and 25 fail their first pod and succeed on
the retry, and whose indexes 100-102 fail every pod, so the Job fails (MaxFailedIndexesExceeded)
with most indexes never run; a stage with a malformed ``links`` argument; a task that is not a
stage. The browser opens the task instance's "kbatch indexes" tab (the URL of the task's
"Indexes" extra link), the counts and states must match what the Job's status and its pods say,
a failed index shows its attempts and its log; the load time is measured and reported. A user
whose role grants no DAG access gets no data.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_kbatch.spec.intervals import IndexSet
from tests.conftest import ClusterHandle, wait_until

DAG_ID = "kbatch_test_ui"
COMPLETIONS = 1000
FLAKY, BROKEN = (3, 17, 25), (100, 101, 102)
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
log = logging.getLogger(__name__)

pytestmark = pytest.mark.skipif(
    not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
    reason="needs Debian's chromium and chromium-driver (make setup installs them)",
)


def _token(url: str) -> str:
    with urllib.request.urlopen(f"{url}/auth/token", timeout=30) as response:
        return str(json.loads(response.read())["access_token"])


def _get(url: str, token: str) -> tuple[int, Any]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def _token_without_dag_access(deployment: Any) -> str:
    """A JWT of the deployment's auth manager for a user whose role grants nothing (the simple
    auth manager has roles, not per-DAG grants: a user without a role may read no DAG)."""
    code = (
        "from airflow.api_fastapi.app import create_auth_manager\n"
        "from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser\n"
        "print(create_auth_manager().generate_jwt(SimpleAuthManagerUser(username='nobody', role=None)))\n"
    )
    python = str(Path(deployment.cfg.airflow).with_name("python"))
    out = subprocess.run(
        [python, "-c", code], env=deployment.env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1]


def _browser() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1100",
    ):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def _artifacts(tmp_path: Path) -> Path:
    root = os.environ.get("KBATCH_ARTIFACTS_DIR")
    path = Path(root) / "ui" if root else tmp_path / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _expected(devcluster: ClusterHandle, namespace: str) -> tuple[IndexSet, IndexSet, Counter[int]]:
    """(completed, failed, pods per index) as the Job's status and its pods say, read directly."""
    (job,) = devcluster.batch().list_namespaced_job(namespace, label_selector="kbatch.io/task-id=stage").items
    completed = IndexSet.parse(job.status.completed_indexes or "")
    failed = IndexSet.parse(job.status.failed_indexes or "")
    pods = (
        devcluster.core()
        .list_namespaced_pod(
            namespace, label_selector=f"batch.kubernetes.io/controller-uid={job.metadata.uid}"
        )
        .items
    )
    per_index = Counter(int(p.metadata.labels["batch.kubernetes.io/job-completion-index"]) for p in pods)
    return completed, failed, per_index


def _run(deployment: Any, run_id: str, namespace: str, marker: str, marker_dir: Path) -> None:
    deployment.trigger(
        DAG_ID,
        run_id,
        conf={
            "namespace": namespace,
            "marker": marker,
            "marker_dir": str(marker_dir),
            "completions": COMPLETIONS,
            "broken": ",".join(map(str, BROKEN)),
            "flaky": ",".join(map(str, FLAKY)),
        },
    )
    try:
        wait_until(
            lambda: any(r.run_id == run_id and r.finished for r in deployment.runs(DAG_ID)),
            timeout=600,
            interval=1,
            what="the UI test run finished",
        )
    except AssertionError:
        raise AssertionError(deployment.report(DAG_ID)) from None


@pytest.mark.timeout(1500)
def test_the_index_view_in_a_real_browser(
    airflow_deployment: Any, devcluster: ClusterHandle, namespace: str, tmp_path: Path, record_property: Any
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    deployment = airflow_deployment
    deployment.wait_dag(DAG_ID, timeout=180)
    deployment.unpause(DAG_ID)
    # the execution API builds its versioned routes on first use, which under load once took
    # longer than a task start's timeout: touch it first
    with contextlib.suppress(OSError):
        urllib.request.urlopen(f"{deployment.url}/execution/health", timeout=120).read()
    marker_dir = Path(tempfile.mkdtemp(prefix="kbatch-ui-"))
    marker_dir.chmod(0o777)  # the pods run as a non-root user
    try:
        for _ in range(2):
            marker = f"ui-{secrets.token_hex(5)}"
            run_id, started = f"manual__{marker}", time.monotonic()
            _run(deployment, run_id, namespace, marker, marker_dir)
            if re.search(r"job \S+/kb-", deployment.task_logs(DAG_ID, run_id, "stage")):
                break
            # the worker never got to run the task (its start timed out in the api-server)
            log.warning("the stage of %s never started; once more:\n%s", run_id, deployment.report(DAG_ID))
    finally:
        shutil.rmtree(marker_dir, ignore_errors=True)
    run_seconds = time.monotonic() - started
    tis = deployment.task_instances(DAG_ID, run_id)
    assert tis[("stage", -1)] == ("failed", 1), deployment.report(DAG_ID)
    assert tis[("bad_links", -1)] == ("failed", 1)  # retries=2, but a bad argument is final
    assert "links: " in deployment.task_logs(DAG_ID, run_id, "bad_links")
    stage_log = deployment.task_logs(DAG_ID, run_id, "stage")
    assert "backing off" in stage_log or "failed indexes" in stage_log  # the progress lines name them

    completed, failed, pods_per_index = _expected(devcluster, namespace)
    assert set(failed) == set(BROKEN)
    assert all(pods_per_index[i] == 2 for i in FLAKY) and all(i in completed for i in FLAKY)
    not_run = COMPLETIONS - len(completed) - len(failed)

    # the API, as the all-admin users of this deployment see it
    url, token = deployment.url, _token(deployment.url)
    q = urllib.parse.urlencode({"dag_id": DAG_ID, "run_id": run_id, "task_id": "stage", "map_index": -1})
    status, body = _get(f"{url}/kbatch/api/stage?{q}", token)
    assert status == 200, body
    counts = body["grid"]["counts"]
    assert (counts["succeeded"], counts["failed"], counts["not_run"]) == (
        len(completed),
        len(failed),
        not_run,
    )
    assert body["ledger"]["state"] == "failed" and body["grid"]["job_reason"] == "MaxFailedIndexesExceeded"
    sent = json.dumps(body).lower()
    assert not any(s in sent for s in ("https://", "certificate", "token", "password"))  # no credentials
    other = urllib.parse.urlencode({"dag_id": DAG_ID, "run_id": run_id, "task_id": "not_a_stage"})
    status, body = _get(f"{url}/kbatch/api/stage?{other}", token)
    assert status == 200 and body["kbatch"] is False and "not a kbatch stage" in body["message"]
    status, run = _get(
        f"{url}/kbatch/api/run?{urllib.parse.urlencode({'dag_id': DAG_ID, 'run_id': run_id})}", token
    )
    assert status == 200 and {s["task_id"]: s["ledger"]["state"] for s in run["stages"] if s["ledger"]} == {
        "stage": "failed"
    }
    # the extra links, computed by the worker when the task ended
    quoted = urllib.parse.quote(run_id, safe="")
    status, body = _get(f"{url}/api/v2/dags/{DAG_ID}/dagRuns/{quoted}/taskInstances/stage/links", token)
    assert status == 200, body
    links = body["extra_links"]
    assert links["Indexes"].endswith(f"/dags/{DAG_ID}/runs/{quoted}/tasks/stage/plugin/kbatch-indexes")
    assert (
        links["Grafana"]
        == f"https://grafana.example/d/kbatch?var-dag={DAG_ID}&var-run={quoted}&var-task=stage"
    )

    # a user whose role grants no access to the DAG gets no data
    nobody = _token_without_dag_access(deployment)
    for path in (f"/kbatch/api/stage?{q}", f"/kbatch/api/stage/log?{q}&pod=x", f"/kbatch/api/run?{q}"):
        status, body = _get(url + path, nobody)
        assert status == 403 and "grid" not in json.dumps(body) and "stages" not in json.dumps(body), (
            path,
            body,
        )

    # the browser: the task instance's kbatch tab, where the "Indexes" link points
    shots = _artifacts(tmp_path)
    driver = _browser()
    try:
        t0 = time.monotonic()
        driver.get(url + links["Indexes"])
        frame = WebDriverWait(driver, 60).until(ec.presence_of_element_located((By.CSS_SELECTOR, "iframe")))
        driver.switch_to.frame(frame)
        WebDriverWait(driver, 60).until(
            lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-kbatch") in ("yes", "error")
        )
        load_seconds = time.monotonic() - t0
        body_el = driver.find_element(By.TAG_NAME, "body")
        assert body_el.get_attribute("data-kbatch") == "yes", driver.find_element(By.ID, "status").text
        render_ms = int(body_el.get_attribute("data-rendered-ms") or -1)
        chips = {
            c.get_attribute("data-state"): int(c.find_element(By.CLASS_NAME, "n").text)
            for c in driver.find_elements(By.CSS_SELECTOR, "#counts .chip")
        }
        assert chips == {
            s: n
            for s, n in {"succeeded": len(completed), "failed": len(failed), "not_run": not_run}.items()
            if n
        }
        driver.switch_to.default_content()
        driver.save_screenshot(str(shots / "ui-task-instance-tab.png"))
        driver.switch_to.frame(frame)

        # failed only: the three broken indexes, one range; its attempts and the log of one
        driver.find_element(By.CSS_SELECTOR, "#counts .chip[data-state=failed]").click()
        rows = driver.find_elements(By.CSS_SELECTOR, "#rows .row")
        assert [r.get_attribute("data-state") for r in rows] == ["failed"] and "100-102" in rows[0].text
        rows[0].click()
        WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#attempts tr[data-pod]"))
        attempts = driver.find_elements(By.CSS_SELECTOR, "#attempts tr[data-pod]")
        assert len(attempts) == 2 and all("3" in a.find_elements(By.TAG_NAME, "td")[3].text for a in attempts)
        attempts[-1].find_element(By.CSS_SELECTOR, "button.log").click()
        text = (
            WebDriverWait(driver, 30)
            .until(
                lambda d: (
                    d.find_elements(By.ID, "log-text") or d.find_elements(By.ID, "log-gone") or [None]
                )[0]
            )
            .text
        )
        assert f"ui stage index 100 marker {marker}" in text, text
        driver.execute_script("window.kbatchShowIndex(3)")  # a flaky index: two tries of one pod each
        WebDriverWait(driver, 30).until(
            lambda d: (
                "index 3" in d.find_element(By.ID, "detail-title").text
                and len(d.find_elements(By.CSS_SELECTOR, "#attempts tr[data-pod]")) == 2
            )
        )
        phases = [
            r.find_elements(By.TAG_NAME, "td")[2].text
            for r in driver.find_elements(By.CSS_SELECTOR, "#attempts tr[data-pod]")
        ]
        assert phases == ["Failed", "Succeeded"]
        driver.switch_to.default_content()
        driver.save_screenshot(str(shots / "ui-index-attempts-and-log.png"))

        driver.get(f"{url}/dags/{DAG_ID}/runs/{quoted}/plugin/kbatch-pipeline")
        frame = WebDriverWait(driver, 60).until(ec.presence_of_element_located((By.CSS_SELECTOR, "iframe")))
        driver.switch_to.frame(frame)
        WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#stages tbody tr"))
        assert "failed" in driver.find_element(By.CSS_SELECTOR, "#stages tbody tr").text
        driver.switch_to.default_content()
        driver.save_screenshot(str(shots / "ui-run-tab.png"))
    finally:
        driver.quit()
    record_property("ui_view_load_seconds", round(load_seconds, 2))
    record_property("ui_view_render_ms", render_ms)
    log.warning(
        "measured: run %.1f s; the %d-index view loaded in %.2f s (page to grid; %d ms in the iframe), "
        "%d succeeded, %d failed, %d not run; screenshots in %s",
        run_seconds,
        COMPLETIONS,
        load_seconds,
        render_ms,
        len(completed),
        len(failed),
        not_run,
        shots,
    )
