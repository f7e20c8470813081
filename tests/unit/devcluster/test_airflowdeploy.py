"""The pure parts of the Airflow deployment harness and its PostgreSQL server: the environment
the components get, the state another process reads back, the server's settings, binaries and
user, the health verdict and the CLI's arguments. Nothing is started."""

from __future__ import annotations

import datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from airflow_provider_kbatch.devcluster import __main__ as cli
from airflow_provider_kbatch.devcluster import airflowdeploy as ad
from airflow_provider_kbatch.devcluster import postgres as pg


def config(**overrides: object) -> ad.DeploymentConfig:
    values: dict[str, object] = {
        "home": Path("/h"),
        "dags_folder": Path("/d"),
        "sql_alchemy_conn": pg.sqlalchemy_url(5432),
        "api_port": 18080,
        "worker_log_port": 18081,
        "trigger_log_port": 18082,
        "marker": "m1",
        "api_secret_key": "s",
        "jwt_secret": "j",
        "bin_dir": Path("/venv/bin"),
        "pythonpath": ("/repo",),
    }
    values.update(overrides)
    return ad.DeploymentConfig(**values)  # type: ignore[arg-type]


def test_env_drops_the_callers_airflow_settings_and_layers_cluster_then_deployment() -> None:
    base = {
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__X__Y": "1",
        "HOME": "/root",
        "PATH": "/usr/bin",
    }
    extra = {"KUBECONFIG": "/k", "PATH": "/kbin:/usr/bin", "AIRFLOW__CORE__PARALLELISM": "99"}
    env = config().env(base, extra)
    assert "AIRFLOW__X__Y" not in env
    assert env["HOME"] == "/root" and env["KUBECONFIG"] == "/k"
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["AIRFLOW__CORE__PARALLELISM"] == "4"  # the deployment's own settings win
    assert (
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == "postgresql+psycopg2://airflow@127.0.0.1:5432/airflow"
    )
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:18080/execution/"
    assert env["AIRFLOW__API__HOST"] == "127.0.0.1" and env["AIRFLOW__API__PORT"] == "18080"
    assert env["AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE"] == "False"
    assert env[ad.MARKER_ENV] == "m1" and env["AIRFLOW_HOME"] == "/h"
    assert env["PATH"] == "/venv/bin:/kbin:/usr/bin"
    assert env["PYTHONPATH"] == "/repo"


def test_env_keeps_an_existing_pythonpath_after_the_repo() -> None:
    env = config(parallelism=2, use_job_schedule=True).env({"PYTHONPATH": "/x"})
    assert env["PYTHONPATH"] == "/repo:/x"
    assert env["AIRFLOW__CORE__PARALLELISM"] == "2" and env["AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE"] == "True"


def test_new_config_chooses_distinct_ports_off_the_database_port_and_fresh_secrets() -> None:
    a = ad.DeploymentConfig.new(Path("/h"), Path("/d"), database_port=15432)
    b = ad.DeploymentConfig.new(Path("/h"), Path("/d"), database_port=15432)
    ports = [a.api_port, a.worker_log_port, a.trigger_log_port, 15432]
    assert len(set(ports)) == 4
    assert a.sql_alchemy_conn == pg.sqlalchemy_url(15432)
    assert len({a.marker, b.marker}) == 2 and a.jwt_secret != b.jwt_secret


def test_config_round_trips_through_json() -> None:
    original = config(parallelism=3)
    assert ad.DeploymentConfig.from_json(original.to_json()) == original


def test_a_saved_deployment_is_attached_from_another_process(tmp_path: Path) -> None:
    server = pg.PostgresServer(port=15432, root=tmp_path / "pg", bin_dir=Path("/pg/bin"), run_as=None)
    deployment = ad.AirflowDeployment(
        home=tmp_path,
        dags_folder=Path("/d"),
        extra_env={"KUBECONFIG": "/k"},
        config=config(home=tmp_path),
        postgres=server,
        pids={"scheduler": 4242},
    )
    deployment.save_state()
    assert oct(deployment.state_file.stat().st_mode & 0o777) == "0o600"  # it holds the secrets
    attached = ad.AirflowDeployment.attach(tmp_path)
    assert attached is not None
    assert attached.cfg == deployment.cfg and attached.pids == {"scheduler": 4242}
    assert attached.extra_env == {"KUBECONFIG": "/k"}
    assert (attached.postgres.port, attached.postgres.root) == (15432, tmp_path / "pg")
    assert ad.shell_env(attached)["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == deployment.cfg.sql_alchemy_conn
    assert ad.shell_env(attached)["KUBECONFIG"] == "/k"
    assert ad.AirflowDeployment.attach(tmp_path / "nothing") is None


@pytest.mark.parametrize(
    ("health", "verdict"),
    [
        ({}, False),
        (
            {p: {"status": "healthy"} for p in ("metadatabase", "scheduler", "triggerer", "dag_processor")},
            True,
        ),
        ({"metadatabase": {"status": "healthy"}, "scheduler": {"status": "healthy"}}, False),
        (
            {
                "metadatabase": {"status": "healthy"},
                "scheduler": {"status": "unhealthy"},
                "triggerer": {"status": "healthy"},
                "dag_processor": {"status": "healthy"},
            },
            False,
        ),
    ],
)
def test_healthy_needs_every_component(health: dict[str, dict[str, str]], verdict: bool) -> None:
    assert ad.healthy(health) is verdict


def _run(run_id: str, start: int | None, end: int | None) -> ad.Run:
    def at(minute: int | None) -> datetime.datetime | None:
        return (
            None if minute is None else datetime.datetime(2026, 1, 1, 0, minute, tzinfo=datetime.timezone.utc)
        )

    return ad.Run("d", run_id, "success", "backfill", None, at(start), at(end), 1, {})


def test_overlapping_pairs_touching_intervals_do_not_overlap() -> None:
    runs = [_run("a", 0, 10), _run("b", 5, 15), _run("c", 15, 20), _run("d", None, None)]
    assert ad.overlapping(runs) == [("a", "b")]


def test_find_bin_dir_prefers_the_override_then_the_newest_version(tmp_path: Path) -> None:
    for version in ("9.6", "15", "13"):
        (tmp_path / version / "bin").mkdir(parents=True)
        (tmp_path / version / "bin" / "initdb").touch()
    pattern = str(tmp_path / "*" / "bin" / "initdb")
    assert pg.find_bin_dir({}, pattern) == tmp_path / "15" / "bin"
    assert pg.find_bin_dir({pg.BIN_DIR_ENV: "/opt/pg/bin"}, pattern) == Path("/opt/pg/bin")
    with pytest.raises(pg.PostgresError, match="apt-get install -y postgresql"):
        pg.find_bin_dir({}, str(tmp_path / "none" / "initdb"))


def test_the_server_runs_as_postgres_then_nobody_when_started_as_root() -> None:
    users = {
        "postgres": SimpleNamespace(pw_uid=101, pw_gid=104),
        "nobody": SimpleNamespace(pw_uid=65534, pw_gid=65534),
    }
    assert pg.unprivileged_user(1000, users.__getitem__) is None
    assert pg.unprivileged_user(0, users.__getitem__) == pg.RunAs("postgres", 101, 104)
    del users["postgres"]
    assert pg.unprivileged_user(0, users.__getitem__) == pg.RunAs("nobody", 65534, 65534)
    with pytest.raises(pg.PostgresError):
        pg.unprivileged_user(0, {}.__getitem__)


def test_server_settings_loopback_tcp_only_and_not_durable() -> None:
    settings = pg.server_settings(15432, max_connections=50)
    assert settings["listen_addresses"] == "127.0.0.1" and settings["port"] == "15432"
    assert settings["unix_socket_directories"] == ""
    assert settings["fsync"] == "off" and settings["max_connections"] == "50"
    text = pg.config_text({"port": "1", "unix_socket_directories": ""})
    assert text.splitlines()[1:] == ["port = '1'", "unix_socket_directories = ''"]


def test_the_server_directory_exists_only_once_started() -> None:
    server = pg.PostgresServer(port=1, bin_dir=Path("/pg/bin"), run_as=None)
    assert server.pid is None and not server.running()
    with pytest.raises(pg.PostgresError, match="start"):
        _ = server.data_dir
    again = pg.PostgresServer.from_state(server.state())
    assert (again.port, again.root, again.bin_dir) == (1, None, Path("/pg/bin"))


def test_cli_airflow_subcommands() -> None:
    parser = cli._parser()
    args = parser.parse_args(
        [
            "--state-dir",
            "/c",
            "airflow",
            "up",
            "--state-dir",
            "/a",
            "--dags-folder",
            "/dags",
            "--parallelism",
            "2",
        ]
    )
    assert (args.command, args.airflow_command) == ("airflow", "up")
    assert (args.state_dir, args.airflow_dir, args.dags_folder, args.parallelism) == (
        Path("/c"),
        Path("/a"),
        Path("/dags"),
        2,
    )
    down = parser.parse_args(["airflow", "down"])
    assert (down.airflow_command, down.airflow_dir, down.state_dir) == ("down", None, None)
    assert parser.parse_args(["airflow", "status", "--state-dir", "/a"]).airflow_dir == Path("/a")
    assert ad.default_home("x").parts[-2:] == ("airflow", "x")
