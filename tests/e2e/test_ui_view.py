"""The kbatch UI view in a real browser (Debian's headless Chromium, driven by Selenium) against
the shared deployment's real api-server.

One DAG run: a 1,000-index stage whose indexes 3, 17 and 25 fail their first pod and succeed on
the retry, and whose indexes 100-102 fail every pod, so the Job fails (MaxFailedIndexesExceeded)
with most indexes never run; a stage with a malformed ``links`` argument; a task that is not a
stage. The browser opens the task instance's "kbatch indexes" tab (the URL of the task's
"Indexes" extra link), the counts and states must match what the Job's status and its pods say,
a failed index shows its attempts and its log; the load time is measured and reported. A user
whose role grants no DAG access gets no data.

While it runs, a run of a diamond pipeline (``kbatch_test_ui_pipeline``: ``extract`` ->
``left``, ``right`` -> ``join`` -> ``report``, on a workspace; ``right`` sleeps longer) runs
beside it. Once it ended, ``extract``'s Job is given ``ttlSecondsAfterFinished: 0`` so the real
TTL controller garbage-collects it and its pods; then that run's "kbatch pipeline" tab must draw
the lineage the ledger recorded (which output fed which stage, with the digests the producers
recorded), the Airflow dependency, and the critical path (checked against every chain of the
graph, enumerated here), and say that ``extract``'s Job was garbage-collected; ``extract``'s own
tab must work from the ledger alone.
"""

from __future__ import annotations

import contextlib
import itertools
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
PIPELINE_DAG = "kbatch_test_ui_pipeline"
DIAMOND = ("extract", "left", "right", "join")
LINEAGE = {("extract", "left", "a"), ("extract", "right", "a"), ("left", "join", "l"), ("right", "join", "r")}
RIGHT_SECONDS = 12
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


def _chains(graph: dict[str, Any]) -> dict[tuple[str, ...], float]:
    """Every chain of nodes that ran, from a node without a predecessor that ran to one without a
    successor that ran, with its summed total (brute force: the check of the API's path)."""
    total = {n["id"]: n["timings"]["total"] for n in graph["nodes"] if n["timings"]["total"] is not None}
    succ: dict[str, list[str]] = {i: [] for i in total}
    has_pred = set()
    for e in graph["edges"]:
        if e["from"] in total and e["to"] in total:
            succ[e["from"]].append(e["to"])
            has_pred.add(e["to"])
    out: dict[tuple[str, ...], float] = {}

    def walk(chain: tuple[str, ...]) -> None:
        if not succ[chain[-1]]:
            out[chain] = round(sum(total[i] for i in chain), 3)
        for nxt in succ[chain[-1]]:
            walk((*chain, nxt))

    for start in sorted(set(total) - has_pred):
        walk((start,))
    return out


def _garbage_collect(devcluster: ClusterHandle, namespace: str, task_id: str) -> None:
    """Let the real TTL controller delete the finished Job of ``task_id`` (and its pods, by the
    garbage collector): ``ttlSecondsAfterFinished`` set to 0 on the finished Job."""
    selector = f"kbatch.io/dag-id={PIPELINE_DAG},kbatch.io/task-id={task_id}"
    batch, core = devcluster.batch(), devcluster.core()
    for job in batch.list_namespaced_job(namespace, label_selector=selector).items:
        batch.patch_namespaced_job(job.metadata.name, namespace, {"spec": {"ttlSecondsAfterFinished": 0}})
    wait_until(
        lambda: (
            not batch.list_namespaced_job(namespace, label_selector=selector).items
            and not core.list_namespaced_pod(namespace, label_selector=selector).items
        ),
        timeout=180,
        interval=1,
        what=f"the TTL controller deleted the Job of {task_id} and its pods",
    )


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
    for dag_id in (DAG_ID, PIPELINE_DAG):
        deployment.wait_dag(dag_id, timeout=180)
        deployment.unpause(dag_id)
    # the execution API builds its versioned routes on first use, which under load once took
    # longer than a task start's timeout: touch it first
    with contextlib.suppress(OSError):
        urllib.request.urlopen(f"{deployment.url}/execution/health", timeout=120).read()
    marker_dir = Path(tempfile.mkdtemp(prefix="kbatch-ui-"))
    marker_dir.chmod(0o777)  # the pods run as a non-root user
    pipeline_run = f"manual__pipeline_{secrets.token_hex(5)}"  # runs while the big stage does
    conf = {"namespace": namespace, "right_seconds": RIGHT_SECONDS}
    deployment.trigger(PIPELINE_DAG, pipeline_run, conf=conf)
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
    waited = time.monotonic()
    wait_until(
        lambda: any(r.run_id == pipeline_run and r.finished for r in deployment.runs(PIPELINE_DAG)),
        timeout=600,
        interval=1,
        what="the pipeline run finished",
    )
    pipeline_wait_seconds = time.monotonic() - waited  # what the pipeline run added to the test
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
    assert run["critical_path"]["nodes"] == ["stage"]  # bad_links failed fast, not_a_stage ran no time

    # the pipeline run: lineage and critical path, extract's Job garbage-collected
    ptis = deployment.task_instances(PIPELINE_DAG, pipeline_run)
    assert all(ptis[(t, -1)][0] == "success" for t in (*DIAMOND, "report")), deployment.report(PIPELINE_DAG)
    gc_started = time.monotonic()
    _garbage_collect(devcluster, namespace, "extract")
    gc_seconds = time.monotonic() - gc_started
    run_q = urllib.parse.urlencode({"dag_id": PIPELINE_DAG, "run_id": pipeline_run})
    api_started = time.monotonic()
    status, run = _get(f"{url}/kbatch/api/run?{run_q}", token)
    api_seconds = time.monotonic() - api_started
    assert status == 200, run
    assert {s["task_id"]: s["ledger"]["state"] for s in run["stages"]} == dict.fromkeys(DIAMOND, "succeeded")
    stages = {s["id"]: s for s in run["stages"]}
    graph = run["graph"]
    data = {(e["from"], e["to"], e["input"]) for e in graph["edges"] if e["kind"] == "data"}
    assert data == LINEAGE, graph["edges"]
    for e in graph["edges"]:  # each edge's digest is the one its producer recorded for its output
        if e["kind"] == "data":
            assert e["freshness"] == "current"
            assert e["digest"] == stages[e["from"]]["ledger"]["output"]["manifest_digest"]
    assert {(e["from"], e["to"]) for e in graph["edges"] if e["kind"] == "dependency"} == {("join", "report")}
    assert run["dependencies"] == "serialized_dag"
    # the critical path: the heaviest of every chain; through the slow branch
    chains = _chains(graph)
    path = run["critical_path"]
    totals = {n["id"]: n["timings"] for n in graph["nodes"]}
    assert path["seconds"] == max(chains.values()) == chains[tuple(path["nodes"])], (path, chains)
    assert path["nodes"] == ["extract", "right", "join", "report"], (path, chains, totals)
    assert totals["right"]["run"] >= RIGHT_SECONDS
    assert {e["from"] + ">" + e["to"] for e in graph["edges"] if e["critical"]} == {
        "extract>right",
        "right>join",
        "join>report",
    }
    assert {s for s in stages if stages[s]["critical"]} == set(path["nodes"]) & set(stages)
    # extract's Job is gone: the run view says so, and has its try, attempts and times from the ledger
    extract = stages["extract"]
    assert extract["job"]["state"] == "garbage_collected", extract["job"]
    assert extract["job"]["message"].startswith("Job garbage-collected; from the ledger")
    assert [(t["try"], t["attempts"], t["completed"]) for t in extract["ledger"]["tries"]] == [(1, 1, 1)]
    assert extract["timings"]["run"] is not None and extract["ledger"]["attempts"][0]["job_started"]
    assert stages["join"]["job"]["state"] == "exists"
    assert {n: i["stage"] for n, i in stages["join"]["ledger"]["inputs"].items()} == {
        "l": "left",
        "r": "right",
    }
    # ... and so does its stage view, from the ledger alone
    eq = urllib.parse.urlencode({"dag_id": PIPELINE_DAG, "run_id": pipeline_run, "task_id": "extract"})
    status, body = _get(f"{url}/kbatch/api/stage?{eq}", token)
    assert status == 200 and body["job_status"]["state"] == "garbage_collected", body
    assert body["grid"]["counts"]["succeeded"] == 1 and not body["grid"]["job_exists"]
    assert body["grid"]["notes"][0].startswith("Job garbage-collected; from the ledger")
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
    for where in (f"/kbatch/api/stage?{q}", f"/kbatch/api/stage/log?{q}&pod=x", f"/kbatch/api/run?{q}"):
        status, body = _get(url + where, nobody)
        sent = json.dumps(body)
        assert status == 403 and not any(k in sent for k in ("grid", "stages", "graph", "critical_path")), (
            where,
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

        # the pipeline run's tab (the "kbatch pipeline" tab of a DAG run): lineage, the critical path highlighted, the garbage-collected Job
        pquoted = urllib.parse.quote(pipeline_run, safe="")
        t0 = time.monotonic()
        driver.get(f"{url}/dags/{PIPELINE_DAG}/runs/{pquoted}/plugin/kbatch-pipeline")
        frame = WebDriverWait(driver, 60).until(ec.presence_of_element_located((By.CSS_SELECTOR, "iframe")))
        driver.switch_to.frame(frame)
        WebDriverWait(driver, 60).until(
            lambda d: (
                d.find_element(By.TAG_NAME, "body").get_attribute("data-kbatch") in ("yes", "error", "no")
            )
        )
        run_load_seconds = time.monotonic() - t0
        body_el = driver.find_element(By.TAG_NAME, "body")
        assert body_el.get_attribute("data-kbatch") == "yes", driver.find_element(By.ID, "status").text
        run_render_ms = int(body_el.get_attribute("data-rendered-ms") or -1)
        drawn = {
            (e.get_attribute("data-from"), e.get_attribute("data-to"), e.get_attribute("data-kind"))
            for e in driver.find_elements(By.CSS_SELECTOR, "#graph path.edge")
        }
        assert {(a, b) for a, b, kind in drawn if kind == "data"} == {(a, b) for a, b, _ in LINEAGE}
        assert ("join", "report", "dependency") in drawn
        lit = [
            g.get_attribute("data-id")
            for g in driver.find_elements(By.CSS_SELECTOR, "#graph g.node.critical")
        ]
        assert sorted(lit) == sorted(path["nodes"])
        lit_edges = {
            (e.get_attribute("data-from"), e.get_attribute("data-to"))
            for e in driver.find_elements(By.CSS_SELECTOR, "#graph path.edge.critical")
        }
        assert lit_edges == set(itertools.pairwise(path["nodes"]))
        assert (
            "critical path: extract \u2192 right \u2192 join \u2192 report"
            in driver.find_element(By.ID, "critical").text
        )
        assert {
            r.get_attribute("data-id")
            for r in driver.find_elements(By.CSS_SELECTOR, "#stages tbody tr.critical")
        } == {"extract", "right", "join"}
        gone = driver.find_element(By.CSS_SELECTOR, "#stages tbody tr[data-id=extract] td.job").text
        assert gone.startswith("Job garbage-collected; from the ledger"), gone
        lineage_rows = {
            (r.get_attribute("data-from"), r.get_attribute("data-to"))
            for r in driver.find_elements(By.CSS_SELECTOR, "#edges tbody tr[data-kind=data]")
        }
        assert lineage_rows == {(a, b) for a, b, _ in LINEAGE}
        driver.switch_to.default_content()
        driver.save_screenshot(str(shots / "ui-pipeline-run-tab.png"))

        # extract's own page (what its tab shows, without the Airflow UI around it), its Job gone:
        # from the ledger, with its try
        t0 = time.monotonic()
        driver.get(f"{url}/kbatch/view/stage?{eq}&map_index=-1")
        WebDriverWait(driver, 60).until(
            lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-kbatch") in ("yes", "error")
        )
        stage_tab_seconds = time.monotonic() - t0
        assert driver.find_element(By.ID, "status").text.startswith("Job garbage-collected; from the ledger")
        tries = driver.find_elements(By.CSS_SELECTOR, "#tries tbody tr")
        assert [r.get_attribute("data-try") for r in tries] == ["1"]
        driver.save_screenshot(str(shots / "ui-stage-page-job-gone.png"))
    finally:
        driver.quit()
    record_property("ui_view_load_seconds", round(load_seconds, 2))
    record_property("ui_view_render_ms", render_ms)
    record_property("ui_pipeline_wait_seconds", round(pipeline_wait_seconds, 1))
    record_property("ui_run_view_load_seconds", round(run_load_seconds, 2))
    record_property("ui_run_view_render_ms", run_render_ms)
    record_property("ui_run_api_seconds", round(api_seconds, 2))
    log.warning(
        "measured: the run view loaded in %.2f s (page to graph; %d ms in the iframe; /api/run %.2f s, "
        "%d ms server side); the TTL controller took %.1f s to delete extract's Job; critical path %s, %.1f s; "
        "waited %.1f s for the pipeline run after the big one; the page of extract (Job gone) loaded in %.2f s",
        run_load_seconds,
        run_render_ms,
        api_seconds,
        run["read_ms"],
        gc_seconds,
        " > ".join(path["nodes"]),
        path["seconds"],
        pipeline_wait_seconds,
        stage_tab_seconds,
    )
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
