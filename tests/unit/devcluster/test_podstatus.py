from __future__ import annotations

import pytest

from airflow_provider_kbatch.devcluster.processnode.podstatus import (
    Backoff,
    ContainerState,
    Terminated,
    exit_code_of,
    lost_container,
    pod_conditions,
    pod_phase,
    reported_states,
    should_restart,
    stamp_conditions,
    termination_message,
)


def running(name: str = "c") -> ContainerState:
    return ContainerState(name, running_since=1.0)


def exited(code: int, name: str = "c", *, init: bool = False) -> ContainerState:
    return ContainerState(name, init=init, running_since=1.0, terminated=Terminated(code, "x", 1.0, 2.0))


def waiting(name: str = "c") -> ContainerState:
    return ContainerState(name)


def crashlooping(name: str = "c") -> ContainerState:
    st = exited(1, name)
    st.restarting("CrashLoopBackOff", "")
    return st


@pytest.mark.parametrize(
    ("policy", "init", "regular", "terminal", "phase"),
    [
        ("Never", [], [waiting()], False, "Pending"),
        ("Never", [], [running()], False, "Running"),
        ("Never", [], [exited(0)], False, "Succeeded"),
        ("Never", [], [exited(3)], False, "Failed"),
        ("Never", [], [exited(0, "a"), running("b")], False, "Running"),
        ("Never", [], [exited(0, "a"), exited(1, "b")], False, "Failed"),
        ("OnFailure", [], [exited(3)], False, "Running"),
        ("OnFailure", [], [crashlooping()], False, "Running"),
        ("OnFailure", [], [exited(0)], False, "Succeeded"),
        ("Always", [], [exited(0)], False, "Running"),
        ("Never", [exited(1, "i", init=True)], [waiting()], False, "Failed"),
        ("OnFailure", [exited(1, "i", init=True)], [waiting()], False, "Pending"),
        ("Never", [exited(0, "i", init=True)], [running()], False, "Running"),
        ("Never", [ContainerState("i", init=True, running_since=1.0)], [waiting()], False, "Pending"),
        ("Never", [], [exited(0)], True, "Succeeded"),
        ("Never", [], [exited(143)], True, "Failed"),
        ("OnFailure", [], [exited(0)], True, "Succeeded"),
        ("Never", [], [waiting()], True, "Failed"),
        ("Never", [waiting("i")], [exited(0)], True, "Failed"),
    ],
)
def test_pod_phase(
    policy: str, init: list[ContainerState], regular: list[ContainerState], terminal: bool, phase: str
) -> None:
    assert pod_phase(policy, init, regular, terminal=terminal) == phase


def test_sidecar_init_container_counts_as_initialized_once_started() -> None:
    sidecar = ContainerState("side", init=True, sidecar=True, running_since=1.0)
    assert pod_phase("Never", [sidecar], [running()]) == "Running"
    sidecar.terminated = Terminated(143, "Error", 1.0, 2.0)  # stopped after the main container
    assert pod_phase("Never", [sidecar], [exited(0)]) == "Succeeded"
    assert pod_phase("Never", [ContainerState("side", init=True, sidecar=True)], [waiting()]) == "Pending"


def test_conditions_while_running_and_after() -> None:
    conds = {c["type"]: c for c in pod_conditions("Running", [], [running()], sandbox=True)}
    assert conds["Ready"]["status"] == "True"
    assert conds["Initialized"]["status"] == "True"
    assert conds["PodReadyToStartContainers"]["status"] == "True"
    done = {c["type"]: c for c in pod_conditions("Succeeded", [], [exited(0)], sandbox=True)}
    assert done["Ready"] == {"type": "Ready", "status": "False", "reason": "PodCompleted", "message": None}
    pending = {c["type"]: c for c in pod_conditions("Pending", [waiting("i")], [waiting()], sandbox=False)}
    assert pending["Initialized"]["reason"] == "ContainersNotInitialized"
    assert pending["Initialized"]["message"] == "containers with incomplete status: [i]"


def test_stamp_conditions_keeps_transition_time_while_status_holds() -> None:
    previous = {"Ready": {"type": "Ready", "status": "False", "lastTransitionTime": "2020-01-01T00:00:00Z"}}
    same = stamp_conditions([{"type": "Ready", "status": "False"}], previous, 1e9)
    changed = stamp_conditions([{"type": "Ready", "status": "True"}], previous, 1e9)
    assert same[0]["lastTransitionTime"] == "2020-01-01T00:00:00Z"
    assert changed[0]["lastTransitionTime"] == "2001-09-09T01:46:40Z"


def test_container_status_clears_the_other_states() -> None:
    status = exited(3).as_status()
    assert status["state"]["running"] is None and status["state"]["waiting"] is None
    assert status["state"]["terminated"]["exitCode"] == 3
    assert status["ready"] is False


def test_termination_message_tail_and_fallback() -> None:
    assert termination_message(b"x" * 5000 + b"END", "File", 1, "log") == ("x" * 4093 + "END")
    logs = "".join(f"line {i}\n" for i in range(200))
    fallback = termination_message(b"", "FallbackToLogsOnError", 2, logs)
    assert fallback.endswith("line 199\n") and fallback.startswith("line 120\n")
    assert termination_message(b"", "FallbackToLogsOnError", 0, logs) == ""
    assert termination_message(b"", "File", 2, logs) == ""
    big = "y" * 3000 + "\n"
    assert len(termination_message(b"", "FallbackToLogsOnError", 1, big).encode()) == 2048


def test_exit_code_of_signal() -> None:
    assert exit_code_of(-9) == (137, 9)
    assert exit_code_of(-15) == (143, 15)
    assert exit_code_of(3) == (3, None)


def test_backoff_doubles_to_cap() -> None:
    backoff = Backoff(initial=1, cap=5)
    assert [backoff.next_delay("c") for _ in range(5)] == [1, 2, 4, 5, 5]
    assert backoff.next_delay("other") == 1


@pytest.mark.parametrize(
    ("container", "policy", "again"),
    [
        (exited(1), "Never", False),
        (exited(1), "OnFailure", True),
        (exited(0), "OnFailure", False),
        (exited(0), "Always", True),
        (exited(1, init=True), "Never", False),
        (exited(1, init=True), "Always", True),
        (exited(0, init=True), "Always", False),
        (ContainerState("s", init=True, sidecar=True), "Never", True),
        (running(), "Always", False),  # not ended
    ],
)
def test_should_restart(container: ContainerState, policy: str, again: bool) -> None:
    assert should_restart(container, policy) is again


def test_a_node_restart_keeps_reported_terminations_and_kills_the_rest() -> None:
    status = {
        "initContainerStatuses": [
            {
                "name": "init",
                "state": {
                    "terminated": {
                        "exitCode": 0,
                        "reason": "Completed",
                        "startedAt": "2030-01-01T00:00:00Z",
                        "finishedAt": "2030-01-01T00:00:05Z",
                    }
                },
            },
        ],
        "containerStatuses": [{"name": "main", "state": {"running": {"startedAt": "2030-01-01T00:00:06Z"}}}],
    }
    reported = reported_states(status)
    assert sorted(reported) == ["init", "main"]
    init = lost_container(reported["init"], now=2e9)
    assert (init.exit_code, init.reason, init.finished_at - init.started_at) == (0, "Completed", 5.0)
    main = lost_container(reported["main"], now=2e9)
    assert (main.exit_code, main.reason, main.finished_at) == (137, "Error", 2e9)
    assert "restarted" in main.message
    assert lost_container({}, now=2e9).started_at == 0
