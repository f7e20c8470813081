"""workspace.py: names, sub-paths, volumes/mounts, env, the claim decision and the ledger record (pure)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_provider_kbatch.pipeline import workspace as ws
from airflow_provider_kbatch.pipeline.contracts import Contract
from airflow_provider_kbatch.spec.errors import KbatchSpecError
from airflow_provider_kbatch.spec.manifest import build_job_manifest, spec_hash
from airflow_provider_kbatch.spec.names import JobIdentity, run_key
from airflow_provider_kbatch.spec.stage import StageSpec

RUN = "scheduled__2026-01-01T00:00:00+00:00"
RK = run_key(RUN)
ORDERS = Contract("orders", "1.2", {"id": "int", "amount": "int"})
WS = ws.Workspace(create=True, size="1Gi")


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({}, "workspace"),
        ({"claim_name": "data", "create": True}, "workspace"),
        ({"claim_name": "Not_A_Claim"}, "workspace.claim_name"),
        ({"claim_name": "data", "storage_class": "fast"}, "workspace.storage_class"),
        ({"create": True, "size": "lots"}, "workspace.size"),
        ({"create": True, "size": "0"}, "workspace.size"),
        ({"create": True, "access_modes": ["ReadWriteSometimes"]}, "workspace.access_modes"),
        ({"create": True, "retention": "forever"}, "workspace.retention"),
    ],
)
def test_workspace_options_are_checked_when_built(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(KbatchSpecError) as err:
        ws.Workspace(**kwargs)
    assert field in str(err.value)


def test_workspace_kinds() -> None:
    assert ws.Workspace(claim_name="data").provisioned is False
    created = ws.Workspace(create=True, access_modes="ReadWriteMany")
    assert created.provisioned and created.access_modes == ("ReadWriteMany",)


# --------------------------------------------------------------------------- names and paths


@pytest.mark.parametrize(
    ("dag_id", "run_id", "generation", "expected_prefix"),
    [
        ("etl", RUN, 1, "kbatch-ws-etl-"),
        ("My DAG.v2", RUN, 3, "kbatch-ws-my-dag-v2-"),
        ("x" * 200, RUN, 1, "kbatch-ws-" + "x" * 30 + "-"),
        ("___", RUN, 1, "kbatch-ws-"),
    ],
)
def test_claim_name_is_a_dns_label_per_run_and_generation(
    dag_id: str, run_id: str, generation: int, expected_prefix: str
) -> None:
    name = ws.claim_name(dag_id, run_id, generation)
    assert name.startswith(expected_prefix) and name.endswith(f"-g{generation}")
    assert len(name) <= 63
    assert name == ws.claim_name(dag_id, run_id, generation)  # deterministic
    assert name != ws.claim_name(dag_id, run_id + "x", generation)  # never shared across runs
    assert name != ws.claim_name(dag_id, run_id, generation + 1)  # never reused after deletion


def test_claim_name_generation_starts_at_one() -> None:
    with pytest.raises(ValueError):
        ws.claim_name("etl", RUN, 0)


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda: ws.run_dir(RUN), f"runs/{RK}"),
        (lambda: ws.output_subpath(RUN, "raw"), f"runs/{RK}/outputs/raw"),
        (lambda: ws.checkpoint_subpath(RUN, "crunch"), f"runs/{RK}/checkpoints/crunch"),
        (lambda: ws.checkpoint_subpath(RUN, "grp.crunch", 3), f"runs/{RK}/checkpoints/grp.crunch.3"),
        (lambda: ws.output_mount("raw"), "/kbatch/out/raw"),
        (lambda: ws.input_mount("raw"), "/kbatch/in/raw"),
    ],
)
def test_layout(call: Any, expected: str) -> None:
    assert call() == expected


def test_backfill_runs_never_share_a_directory() -> None:
    runs = [f"backfill__2026-01-{d:02d}T00:00:00+00:00" for d in range(1, 32)]
    assert len({ws.output_subpath(r, "raw") for r in runs}) == 31
    assert len({ws.claim_name("etl", r) for r in runs}) == 31


# --------------------------------------------------------------------------- ports


@pytest.mark.parametrize(
    ("ports", "workspace", "map_index", "fields"),
    [
        (ws.Ports.build(output="raw"), None, -1, ["workspace"]),
        (ws.Ports.build(checkpoint=True), None, -1, ["workspace"]),
        (ws.Ports.build(output="a/b"), WS, -1, ["output"]),
        (ws.Ports.build(output="..x"), WS, -1, ["output"]),
        (ws.Ports.build(inputs=["ok", "-bad"]), WS, -1, ["inputs"]),
        (ws.Ports.build(output="raw", inputs=["raw"]), WS, -1, ["inputs"]),
        (ws.Ports.build(inputs=["a-b", "a_b"]), WS, -1, ["inputs"]),
        (ws.Ports.build(inputs=["a"], accepts={"b": ORDERS}), WS, -1, ["accepts"]),
        (ws.Ports.build(produces=ORDERS), WS, -1, ["produces"]),
        (ws.Ports.build(output="raw"), WS, 2, ["output"]),
        (
            ws.Ports.build(output="raw", inputs={"src": "ingest"}, produces=ORDERS, checkpoint=True),
            WS,
            -1,
            [],
        ),
        (ws.Ports.build(), None, -1, []),
    ],
)
def test_ports_problems(ports: ws.Ports, workspace: Any, map_index: int, fields: list[str]) -> None:
    assert [e.field for e in ws.ports_problems(ports, workspace, map_index=map_index)] == fields


def test_ports_build_normalises_inputs_and_contracts() -> None:
    assert ws.Ports.build(inputs="raw").inputs == {"raw": None}
    assert ws.Ports.build(inputs=["a", "b"]).inputs == {"a": None, "b": None}
    assert ws.Ports.build(inputs={"a": "ingest"}).inputs == {"a": "ingest"}
    ports = ws.Ports.build(produces=ORDERS.to_dict(), accepts={"a": ORDERS.to_dict()}, inputs=["a"])
    assert ports.produces == ORDERS and ports.accepts == {"a": ORDERS}


# --------------------------------------------------------------------------- wiring


def _wiring(ports: ws.Ports, workspace: ws.Workspace = WS, **kw: Any) -> ws.Wiring:
    args = {"claim": "claim-1", "run_id": RUN, "task_id": "transform", "completions": 4, "image": "img:1"}
    return ws.wiring(workspace, ports, **{**args, **kw})


def test_wiring_mounts_output_rw_inputs_ro_and_checkpoints() -> None:
    ports = ws.Ports.build(output="clean", inputs=["raw", "dim.users"], checkpoint=True)
    wired = _wiring(ports)
    assert wired.volumes == ({"name": "kbatch-workspace", "persistentVolumeClaim": {"claimName": "claim-1"}},)
    assert list(wired.mounts) == [
        {"name": "kbatch-workspace", "mountPath": "/kbatch/out/clean", "subPath": f"runs/{RK}/outputs/clean"},
        {
            "name": "kbatch-workspace",
            "mountPath": "/kbatch/in/raw",
            "subPath": f"runs/{RK}/outputs/raw",
            "readOnly": True,
        },
        {
            "name": "kbatch-workspace",
            "mountPath": "/kbatch/in/dim.users",
            "subPath": f"runs/{RK}/outputs/dim.users",
            "readOnly": True,
        },
        {
            "name": "kbatch-workspace",
            "mountPath": "/kbatch/checkpoints",
            "subPath": f"runs/{RK}/checkpoints/transform",
        },
    ]


@pytest.mark.parametrize(
    ("ports", "expected"),
    [
        (ws.Ports.build(), {"KBATCH_IMAGE": "img:1"}),
        (
            ws.Ports.build(output="clean"),
            {
                "KBATCH_IMAGE": "img:1",
                "KBATCH_OUTPUT_DIR": "/kbatch/out/clean",
                "KBATCH_STAGE_INDEXES": "0-3",
            },
        ),
        (
            ws.Ports.build(inputs=["dim.users"]),
            {"KBATCH_IMAGE": "img:1", "KBATCH_INPUT_DIM_USERS_DIR": "/kbatch/in/dim.users"},
        ),
        (
            ws.Ports.build(checkpoint=True),
            {"KBATCH_IMAGE": "img:1", "KBATCH_CHECKPOINT_DIR": "/kbatch/checkpoints"},
        ),
        (
            ws.Ports.build(output="o", produces=ORDERS, inputs=["raw"], accepts={"raw": ORDERS}),
            {
                "KBATCH_IMAGE": "img:1",
                "KBATCH_OUTPUT_DIR": "/kbatch/out/o",
                "KBATCH_STAGE_INDEXES": "0-3",
                "KBATCH_INPUT_RAW_DIR": "/kbatch/in/raw",
                "KBATCH_OUTPUT_CONTRACT": ORDERS.to_json(),
                "KBATCH_INPUT_RAW_CONTRACT": ORDERS.to_json(),
            },
        ),
    ],
)
def test_wiring_env(ports: ws.Ports, expected: dict[str, str]) -> None:
    assert dict(_wiring(ports).env) == expected


def test_init_container_creates_only_the_writable_directories() -> None:
    wired = _wiring(ws.Ports.build(output="clean", inputs=["raw"], checkpoint=True))
    (init,) = wired.init_containers
    assert init["name"] == "kbatch-workspace-init" and init["image"] == "img:1"
    assert init["command"][:2] == ["sh", "-c"]
    assert init["command"][4:] == [
        f"/kbatch/workspace/runs/{RK}/outputs/clean",
        f"/kbatch/workspace/runs/{RK}/checkpoints/transform",
    ]
    assert init["volumeMounts"] == [{"name": "kbatch-workspace", "mountPath": "/kbatch/workspace"}]
    # a consumer without output or checkpoint creates nothing
    assert _wiring(ws.Ports.build(inputs=["raw"])).init_containers == ()
    # opted out, or another image
    assert (
        _wiring(ws.Ports.build(output="o"), ws.Workspace(create=True, prepare_dirs=False)).init_containers
        == ()
    )
    other = _wiring(ws.Ports.build(output="o"), ws.Workspace(claim_name="data", init_image="busybox:1.36"))
    assert other.init_containers[0]["image"] == "busybox:1.36"


def test_apply_wiring_builds_a_restricted_job_and_the_hash_covers_the_claim() -> None:
    spec = StageSpec(image="img:1", command=("python", "-m", "x"), completions=4, env={"A": "1"})
    ports = ws.Ports.build(output="clean", inputs=["raw"])
    wired = ws.apply_wiring(spec, _wiring(ports))
    identity = JobIdentity(dag_id="etl", task_id="transform", run_id=RUN)
    job = build_job_manifest(wired, identity, generation=1, namespace="ns")
    pod = job["spec"]["template"]["spec"]
    main = pod["containers"][0]
    assert {e["name"] for e in main["env"]} >= {"A", "KBATCH_OUTPUT_DIR", "KBATCH_INPUT_RAW_DIR"}
    assert [m["mountPath"] for m in main["volumeMounts"]] == ["/kbatch/out/clean", "/kbatch/in/raw"]
    assert pod["volumes"] == [{"name": "kbatch-workspace", "persistentVolumeClaim": {"claimName": "claim-1"}}]
    (init,) = pod["initContainers"]
    assert init["securityContext"]["allowPrivilegeEscalation"] is False  # restricted PSS applies
    # the claim (generation), the sub-paths and the contracts are part of what resume trusts
    other_claim = ws.apply_wiring(spec, _wiring(ports, claim="claim-2"))
    assert spec_hash(wired) != spec_hash(other_claim) != spec_hash(spec)


@pytest.mark.parametrize(
    ("spec_kwargs", "field"),
    [
        ({"env": {"KBATCH_OUTPUT_DIR": "/x"}}, "env"),
        ({"volumes": ({"name": "kbatch-workspace", "emptyDir": {}},)}, "volumes"),
        ({"volume_mounts": ({"name": "v", "mountPath": "/kbatch/out/clean"},)}, "volume_mounts"),
        (
            {
                "job_template": {
                    "spec": {"template": {"spec": {"initContainers": [{"name": "kbatch-workspace-init"}]}}}
                }
            },
            "job_template",
        ),
    ],
)
def test_apply_wiring_refuses_clashes(spec_kwargs: dict[str, Any], field: str) -> None:
    spec = StageSpec(image="img:1", **spec_kwargs)
    with pytest.raises(KbatchSpecError) as err:
        ws.apply_wiring(spec, _wiring(ws.Ports.build(output="clean")))
    assert field in err.value.field


def test_apply_wiring_keeps_the_authors_init_containers_after_ours() -> None:
    template = {"spec": {"template": {"spec": {"initContainers": [{"name": "mine", "image": "x"}]}}}}
    spec = StageSpec(image="img:1", job_template=template)
    wired = ws.apply_wiring(spec, _wiring(ws.Ports.build(output="o")))
    names = [c["name"] for c in wired.job_template["spec"]["template"]["spec"]["initContainers"]]
    assert names == ["kbatch-workspace-init", "mine"]
    assert template["spec"]["template"]["spec"]["initContainers"] == [{"name": "mine", "image": "x"}]


# --------------------------------------------------------------------------- the claim


def test_claim_manifest() -> None:
    body = ws.claim_manifest(
        ws.Workspace(create=True, storage_class="fast", size="5Gi", access_modes=("ReadWriteMany",)),
        dag_id="etl",
        run_id=RUN,
        generation=2,
    )
    assert body["metadata"]["name"] == ws.claim_name("etl", RUN, 2)
    assert body["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "airflow-provider-kbatch",
        "kbatch.io/dag-id": "etl",
        "kbatch.io/run-key": RK,
        "kbatch.io/workspace": "true",
    }
    assert body["metadata"]["annotations"]["kbatch.io/run-id"] == RUN
    assert body["metadata"]["annotations"]["kbatch.io/workspace-generation"] == "2"
    assert body["spec"] == {
        "accessModes": ["ReadWriteMany"],
        "resources": {"requests": {"storage": "5Gi"}},
        "storageClassName": "fast",
    }
    assert "storageClassName" not in ws.claim_manifest(WS, dag_id="etl", run_id=RUN, generation=1)["spec"]


def _pvc(name: str, *, run_id: str = RUN, deleting: bool = False, phase: str = "Bound") -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "uid": "u-" + name,
        "annotations": {"kbatch.io/dag-id": "etl", "kbatch.io/run-id": run_id},
    }
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "status": {"phase": phase}}


def _record(generation: int = 1, *, state: str = "active", uid: str | None = "u1") -> ws.WorkspaceRecord:
    data = ws.record_workspace(
        {},
        claim=ws.claim_name("etl", RUN, generation),
        generation=generation,
        uid=uid,
        provisioned=True,
        retention="delete_on_success",
        run_id=RUN,
        logical_date=None,
        at="t1",
    )
    if state == "deleted":
        data = ws.record_workspace_deleted(data, claim=ws.claim_name("etl", RUN, generation), at="t2")
    record = ws.read_workspace(data)
    assert record is not None
    return record


G1 = ws.claim_name("etl", RUN, 1)


@pytest.mark.parametrize(
    ("record", "generation"),
    [
        (None, 1),
        (_record(1), 1),
        (_record(3), 3),
        (_record(1, state="deleted"), 2),
        (_record(4, state="deleted"), 5),
    ],
)
def test_candidate_generation(record: Any, generation: int) -> None:
    assert ws.candidate_generation(record) == generation


@pytest.mark.parametrize(
    ("found", "record", "verdict"),
    [
        (None, None, "create"),  # first stage of the run
        (None, _record(1, uid=None), "create"),  # recorded but never seen: create is safe
        (None, _record(1), "gone"),  # it existed: deleted behind our back -> next generation
        (_pvc(G1), None, "use"),  # created by a concurrent stage
        (_pvc(G1), _record(1), "use"),
        (_pvc(G1, deleting=True), _record(1), "gone"),  # terminating: never mount it
        (_pvc(G1, phase="Lost"), _record(1), "gone"),
    ],
)
def test_judge_claim(found: Any, record: Any, verdict: str) -> None:
    assert ws.judge_claim(found, name=G1, record=record, dag_id="etl", run_id=RUN) == verdict


def test_judge_claim_refuses_a_claim_of_another_run() -> None:
    with pytest.raises(ValueError, match="not created for DAG 'etl' run"):
        ws.judge_claim(_pvc(G1, run_id="other"), name=G1, record=None, dag_id="etl", run_id=RUN)


@pytest.mark.parametrize(
    ("found", "problem"),
    [(None, "does not exist"), (_pvc("data", deleting=True), "being deleted"), (_pvc("data"), None)],
)
def test_existing_claim_problem(found: Any, problem: str | None) -> None:
    result = ws.existing_claim_problem(found, "data")
    assert result is None if problem is None else problem in (result or "")


# --------------------------------------------------------------------------- ledger record


def _data(generation: int = 1, uid: str = "u1") -> dict[str, str]:
    return ws.record_workspace(
        {"stage.ingest": "{}"},
        claim=ws.claim_name("etl", RUN, generation),
        generation=generation,
        uid=uid,
        provisioned=True,
        retention="delete_on_success",
        run_id=RUN,
        logical_date="2026-01-01T00:00:00+00:00",
        at="t1",
    )


def test_record_workspace_is_reappliable_and_touches_only_its_key() -> None:
    data = _data()
    assert data["stage.ingest"] == "{}"
    again = ws.record_workspace(
        data,
        claim=G1,
        generation=1,
        uid="u1",
        provisioned=True,
        retention="delete_on_success",
        run_id=RUN,
        logical_date="2026-01-01T00:00:00+00:00",
        at="t9",
    )
    assert again == data
    record = ws.read_workspace(data)
    assert record is not None
    assert (record.claim, record.generation, record.uid, record.state) == (G1, 1, "u1", "active")
    assert record.logical_date == "2026-01-01T00:00:00+00:00" and record.run_id == RUN


def test_record_workspace_never_goes_back_a_generation() -> None:
    newer = _data(generation=2, uid="u2")
    assert _record_over(newer, generation=1) == newer


def _record_over(data: dict[str, str], *, generation: int) -> dict[str, str]:
    return ws.record_workspace(
        data,
        claim=ws.claim_name("etl", RUN, generation),
        generation=generation,
        uid="u-old",
        provisioned=True,
        retention=None,
        run_id=RUN,
        logical_date=None,
        at="t3",
    )


def test_output_locations_follow_the_claim_uid() -> None:
    data = ws.record_output_location(
        _data(), output="raw", stage="ingest", manifest_digest="sha256:a", at="t2"
    )
    record = ws.read_workspace(data)
    assert record is not None and record.outputs["raw"] == ws.OutputLocation(
        "ingest", "sha256:a", G1, "u1", "t2"
    )
    # re-applying changes nothing; another stage may not take the name
    assert (
        ws.record_output_location(data, output="raw", stage="ingest", manifest_digest="sha256:a", at="t5")
        == data
    )
    with pytest.raises(ValueError, match="already wrote an output"):
        ws.record_output_location(data, output="raw", stage="other", manifest_digest="sha256:b", at="t2")
    # the claim is replaced: the location still names the old uid
    moved = _record_over(data, generation=2)
    after = ws.read_workspace(moved)
    assert after is not None and after.uid == "u-old" and after.outputs["raw"].claim_uid == "u1"


def test_deleted_workspace_takes_no_more_outputs() -> None:
    data = ws.record_workspace_deleted(_data(), claim=G1, at="t4")
    record = ws.read_workspace(data)
    assert record is not None and record.state == "deleted" and record.deleted_at == "t4"
    assert ws.record_workspace_deleted(data, claim=G1, at="t5") == data
    assert ws.record_workspace_deleted(data, claim="other", at="t5") == data
    with pytest.raises(ValueError, match="was deleted"):
        ws.record_output_location(data, output="raw", stage="ingest", manifest_digest="sha256:a", at="t6")
    with pytest.raises(ValueError, match="no workspace record"):
        ws.record_output_location({}, output="raw", stage="ingest", manifest_digest="sha256:a", at="t6")


@pytest.mark.parametrize(
    "text",
    ["not json", "[]", json.dumps({"schema_version": 99, "claim": "x"}), json.dumps({"schema_version": 1})],
)
def test_malformed_or_newer_records_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="workspace"):
        ws.read_workspace({"workspace": text})
