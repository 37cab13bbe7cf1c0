"""The PostgreSQL renderers: settings follow the spec, authentication holds, scripts parse and behave."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Protocol

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from components.postgres import config
from model.spec import PostgresSpec
from tests.helpers import spec_for

TIERS = ("small", "medium", "large")


def pg_spec(tier: str = "medium", **update: object) -> PostgresSpec:
    spec = spec_for("dev", tier=tier).postgres
    return spec.model_copy(update=update) if update else spec


def settings_of(conf: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in conf.splitlines() if line.strip() and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def hba_rows(hba: str) -> list[list[str]]:
    return [line.split() for line in hba.splitlines() if line.strip() and not line.startswith("#")]


def all_texts(spec: PostgresSpec) -> dict[str, str]:
    texts = {
        "postgresql.conf": config.render_postgresql_conf(spec),
        "pg_hba.conf": config.render_pg_hba_conf(spec),
        "init": config.render_primary_init_script(spec),
        "health": config.health_command(spec),
    }
    for i in range(1, spec.replicas + 1):
        texts[f"replica-{i}.conf"] = config.render_postgresql_conf(spec, i)
        texts[f"replica-{i}-entrypoint"] = config.render_replica_entrypoint(spec, i)
        texts[f"replica-{i}-health"] = config.health_command(spec, i)
    return texts


# ---- postgresql.conf ---------------------------------------------------------------------------


@pytest.mark.parametrize("tier", TIERS)
def test_connection_and_memory_settings_come_from_the_spec(tier: str) -> None:
    spec = pg_spec(tier)
    for replica in (None, *range(1, spec.replicas + 1)):
        s = settings_of(config.render_postgresql_conf(spec, replica))
        assert s["max_connections"] == str(spec.max_connections)
        assert s["port"] == str(spec.port)
        assert s["shared_buffers"] == f"{spec.shared_buffers_mib}MB"
        assert s["effective_cache_size"] == f"{spec.effective_cache_size_mib}MB"
        assert s["work_mem"] == f"{spec.work_mem_kib}kB"
        assert s["maintenance_work_mem"] == f"{spec.maintenance_work_mem_mib}MB"
        assert s["max_wal_senders"] == str(spec.max_wal_senders)
        assert s["max_replication_slots"] == str(spec.max_replication_slots)


@settings(max_examples=50, deadline=None)
@given(
    max_connections=st.integers(10, 10_000),
    shared=st.integers(32, 65_536),
    work_mem=st.integers(64, 65_536),
    replicas=st.integers(0, 15),
)
def test_any_sizing_renders_verbatim(max_connections: int, shared: int, work_mem: int, replicas: int) -> None:
    spec = pg_spec(max_connections=max_connections, shared_buffers_mib=shared, work_mem_kib=work_mem,
                   replicas=replicas, max_replication_slots=replicas + 2)
    s = settings_of(config.render_postgresql_conf(spec))
    assert (s["max_connections"], s["shared_buffers"], s["work_mem"]) == (
        str(max_connections), f"{shared}MB", f"{work_mem}kB")
    assert int(s["max_replication_slots"]) >= replicas


def test_replication_and_security_settings() -> None:
    s = settings_of(config.render_postgresql_conf(pg_spec()))
    assert s["wal_level"] == "replica"
    assert s["hot_standby"] == "on"
    assert s["password_encryption"] == "'scram-sha-256'"
    assert s["listen_addresses"] == "'*'"
    # DDL logging would print CREATE ROLE ... PASSWORD in clear.
    assert s["log_statement"] == "'none'"
    assert s["unix_socket_directories"] == f"'{config.SOCKET_DIR}'"


def test_primary_and_replicas_differ_only_in_cluster_name() -> None:
    spec = pg_spec("large")
    primary = settings_of(config.render_postgresql_conf(spec))
    for i, name in enumerate(spec.replica_names, start=1):
        replica = settings_of(config.render_postgresql_conf(spec, i))
        assert replica.pop("cluster_name") == f"'{name}'"
        assert {k: v for k, v in primary.items() if k != "cluster_name"} == replica


def test_each_setting_appears_once() -> None:
    conf = config.render_postgresql_conf(pg_spec("large"), 2)
    keys = [line.split("=", 1)[0].strip() for line in conf.splitlines() if line and not line.startswith("#")]
    assert len(keys) == len(set(keys))


def test_slot_wal_is_capped_by_the_planned_storage() -> None:
    small, large = (settings_of(config.render_postgresql_conf(pg_spec(t)))["max_slot_wal_keep_size"]
                    for t in ("small", "large"))
    assert int(small.removesuffix("MB")) < int(large.removesuffix("MB"))
    spec = pg_spec("large")
    assert int(large.removesuffix("MB")) < spec.storage_gib * 1024


def test_unknown_replica_index_is_refused() -> None:
    spec = pg_spec("medium")
    with pytest.raises(ValueError, match="replica 3 does not exist"):
        config.render_postgresql_conf(spec, spec.replicas + 1)
    with pytest.raises(ValueError, match="replica 0"):
        config.render_replica_entrypoint(spec, 0)


@pytest.mark.parametrize(("version", "mount", "pgdata"), [
    (13, "/var/lib/postgresql/data", "/var/lib/postgresql/data/pgdata"),
    (16, "/var/lib/postgresql/data", "/var/lib/postgresql/data/pgdata"),
    (17, "/var/lib/postgresql/data", "/var/lib/postgresql/data/pgdata"),
    (18, "/var/lib/postgresql", "/var/lib/postgresql/18/docker"),
])
def test_data_lives_on_the_image_volume_path(version: int, mount: str, pgdata: str) -> None:
    layout = config.data_layout(version)
    assert (layout.mount, layout.pgdata) == (mount, pgdata)
    # The seed's staging directory (beside PGDATA) must be on the volume too.
    assert os.path.dirname(layout.pgdata).startswith(layout.mount)
    assert layout.pgdata != layout.mount


def test_versions_before_13_are_refused() -> None:
    with pytest.raises(ValueError, match="not supported"):
        config.render_postgresql_conf(pg_spec(version=12))


# ---- pg_hba.conf -------------------------------------------------------------------------------


@pytest.mark.parametrize("tier", TIERS)
def test_no_trust_over_tcp(tier: str) -> None:
    spec = pg_spec(tier)
    rows = hba_rows(config.render_pg_hba_conf(spec))
    for row in rows:
        kind, method = row[0], row[-1]
        if kind.startswith("host"):
            assert method in {"scram-sha-256", "reject"}, row
        else:
            assert kind == "local", row
    assert any(r[0] == "local" and r[-1] == "trust" for r in rows), "the image's init needs the trusted socket"


def test_replication_only_for_the_replication_role() -> None:
    spec = pg_spec()
    rows = hba_rows(config.render_pg_hba_conf(spec))
    replication = [r for r in rows if r[1] == "replication"]
    assert replication == [["host", "replication", spec.replication_user, "all", "scram-sha-256"]]


def test_first_match_rejects_superuser_and_replication_role_sessions() -> None:
    spec = pg_spec()

    def first_match(user: str, database: str) -> str:
        for row in hba_rows(config.render_pg_hba_conf(spec)):
            if row[0] == "host" and row[1] in {"all", database} and row[2] in {"all", user}:
                return row[-1]
        return "no line"

    assert first_match(config.SUPERUSER, "postgres") == "reject"
    assert first_match(spec.replication_user, spec.database) == "reject"
    assert first_match(spec.user, spec.database) == "scram-sha-256"


# ---- primary init ------------------------------------------------------------------------------


@pytest.mark.parametrize("tier", TIERS)
def test_one_slot_per_replica_named_after_it(tier: str) -> None:
    spec = pg_spec(tier)
    init = config.render_primary_init_script(spec)
    # Reserved at creation (immediately_reserve => true): WAL is held before the replica's first use.
    created = re.findall(r"pg_create_physical_replication_slot\('([a-z0-9_]+)', true\)", init)
    assert created == [config.slot_name(r) for r in spec.replica_names]
    assert len(set(created)) == spec.replicas
    for i, slot in enumerate(created, start=1):
        assert re.search(rf"^slot={slot}$", config.render_replica_entrypoint(spec, i), re.M)


def test_slot_names_are_valid_identifiers() -> None:
    assert config.slot_name("postgres-replica-1") == "postgres_replica_1"
    assert re.fullmatch(r"[a-z0-9_]{1,63}", config.slot_name("x" * 80 + "-replica-15"))


def test_init_creates_roles_and_database_from_the_spec() -> None:
    spec = pg_spec(user="app-user", database="app-db")
    init = config.render_primary_init_script(spec)
    assert 'CREATE ROLE "app-user" WITH LOGIN PASSWORD :\'app_password\';' in init
    assert f'CREATE ROLE "{spec.replication_user}" WITH REPLICATION LOGIN PASSWORD :\'replication_password\';' in init
    assert 'CREATE DATABASE "app-db" OWNER "app-user";' in init


@pytest.mark.parametrize("role", ["user", "replication_user"])
def test_the_superuser_name_is_not_reused(role: str) -> None:
    with pytest.raises(ValueError, match="superuser"):
        config.render_primary_init_script(pg_spec(**{role: config.SUPERUSER}))


def test_roles_must_differ() -> None:
    spec = pg_spec()
    with pytest.raises(ValueError, match="differ"):
        config.render_replica_entrypoint(pg_spec(user=spec.replication_user), 1)


# ---- no secrets, valid shell -------------------------------------------------------------------


@pytest.mark.parametrize("tier", TIERS)
def test_no_secret_material_in_rendered_text(tier: str) -> None:
    for name, text in all_texts(pg_spec(tier)).items():
        # The replica's own guard greps for the very pattern it forbids.
        lines = [line for line in text.splitlines() if "grep -q 'password='" not in line]
        assert not any(re.search(r"password\s*=", line, re.I) for line in lines), name
        assert not re.search(r"PASSWORD\s+'", text), name
        assert "PGPASSWORD=" not in text, name
        assert "mocksecret" not in text, name
    init = config.render_primary_init_script(pg_spec(tier))
    # Passwords reach psql from the environment only.
    assert f'"${config.APP_PASSWORD_ENV}"' in init
    assert f'"${config.REPLICATION_PASSWORD_ENV}"' in init


@pytest.mark.skipif(shutil.which("sh") is None, reason="no POSIX sh on this machine")
@pytest.mark.parametrize("tier", TIERS)
def test_scripts_parse_with_sh_n(tier: str, tmp_path: Path) -> None:
    spec = pg_spec(tier)
    scripts = {"init.sh": config.render_primary_init_script(spec)}
    scripts |= {f"replica-{i}.sh": config.render_replica_entrypoint(spec, i) for i in range(1, spec.replicas + 1)}
    scripts["health.sh"] = config.health_command(spec, 1) if spec.replicas else config.health_command(spec)
    for name, text in scripts.items():
        path = tmp_path / name
        path.write_text(text)
        result = subprocess.run(["sh", "-n", str(path)], capture_output=True, text=True, check=False)
        assert result.returncode == 0, f"{name}: {result.stderr}"


def test_health_checks_use_tcp_and_replicas_check_recovery() -> None:
    spec = pg_spec()
    primary = config.health_command(spec)
    # The image's init server listens on the socket only: the socket would report ready too early.
    assert "-h 127.0.0.1" in primary
    assert f"-p {spec.port}" in primary
    assert "pg_is_in_recovery" not in primary
    replica = config.health_command(spec, 1)
    assert replica.startswith(primary + " && ")
    assert "pg_is_in_recovery()" in replica


def test_server_command_points_at_the_uploaded_files() -> None:
    cmd = config.server_command()
    assert cmd[0] == "postgres"
    assert f"config_file={config.CONF_PATH}" in cmd
    assert f"hba_file={config.HBA_PATH}" in cmd


# ---- scripts run against stand-ins for the PostgreSQL tools ------------------------------------

class Stub(Protocol):
    def __call__(self, name: str, body: str = "") -> None: ...


@pytest.fixture
def stubs(tmp_path: Path) -> tuple[Path, Path, Stub]:
    """A bin directory of stand-ins that record their arguments, and the call log."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    calls.touch()

    def stub(name: str, body: str = "") -> None:
        path = bin_dir / name
        path.write_text(f'#!/bin/sh\nprintf "%s\\n" "{name} $*" >> "{calls}"\n{body}\n')
        path.chmod(path.stat().st_mode | stat.S_IXUSR)

    for name in ("psql", "sleep", "chown"):
        stub(name)
    # Run as root, the script steps down through gosu (or su-exec): the stand-in just runs the command.
    for name in ("gosu", "su-exec"):
        stub(name, 'shift; exec "$@"')
    stub("pg_isready")
    # pg_basebackup writes what the real one would: a data directory with -R's files.
    stub("pg_basebackup", 'd=${1#--pgdata=}; mkdir -p "$d"; echo 15 > "$d/PG_VERSION"; touch "$d/standby.signal"; '
                          "echo \"primary_slot_name = 'x'\" > \"$d/postgresql.auto.conf\"")
    stub("docker-entrypoint.sh", 'echo "env-password=${POSTGRES_REPLICATION_PASSWORD:-unset}"')
    return bin_dir, calls, stub


def run_replica_entrypoint(tmp_path: Path, bin_dir: Path, pgdata: Path, password: str = "pw",
                           **extra_env: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    spec = pg_spec("medium")
    passfile = tmp_path / "run" / "replication.pgpass"
    passfile.parent.mkdir(exist_ok=True)
    # Only the passfile's directory moves, to stay inside the test's temporary directory.
    script = config.render_replica_entrypoint(spec, 1).replace(config.REPLICATION_PASSFILE, str(passfile))
    path = tmp_path / "entrypoint.sh"
    path.write_text(script)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "PGDATA": str(pgdata),
           config.REPLICATION_PASSWORD_ENV: password, "PGPASSWORD": "must-not-be-used", **extra_env}
    result = subprocess.run(["sh", str(path), "postgres", "-c", "config_file=x"], env=env, capture_output=True,
                            text=True, check=False, timeout=60)
    return result, passfile


@pytest.mark.skipif(shutil.which("sh") is None, reason="no POSIX sh on this machine")
@pytest.mark.parametrize(("answer", "seeds"), [("ERROR:  replication slot \"x\" already exists", True),
                                               ("FATAL:  no pg_hba.conf entry", False)])
def test_replica_tolerates_an_existing_slot_but_no_other_error(
        tmp_path: Path, stubs: tuple[Path, Path, Stub], answer: str, seeds: bool) -> None:
    bin_dir, calls, stub = stubs
    stub("psql", f'echo "{answer}" >&2; exit 1')
    result, _ = run_replica_entrypoint(tmp_path, bin_dir, tmp_path / "volume" / "pgdata")
    assert ("pg_basebackup" in calls.read_text()) is seeds
    assert (result.returncode == 0) is seeds, result.stderr


@pytest.mark.skipif(shutil.which("sh") is None, reason="no POSIX sh on this machine")
def test_replica_seeds_an_empty_data_directory_then_starts(tmp_path: Path, stubs: tuple[Path, Path, Stub]) -> None:
    bin_dir, calls, _ = stubs
    pgdata = tmp_path / "volume" / "pgdata"
    result, passfile = run_replica_entrypoint(tmp_path, bin_dir, pgdata, password="a:b\\c")
    assert result.returncode == 0, result.stderr
    log = calls.read_text()
    spec = pg_spec("medium")
    basebackup = next(line for line in log.splitlines() if line.startswith("pg_basebackup"))
    for flag in ("--wal-method=stream", "--slot=postgres_replica_1", "--write-recovery-conf", "--no-password"):
        assert flag in basebackup
    assert f"host={spec.primary_name}" in basebackup and f"passfile={passfile}" in basebackup
    assert log.index("pg_isready") < log.index("CREATE_REPLICATION_SLOT") < log.index("pg_basebackup")
    assert "CREATE_REPLICATION_SLOT postgres_replica_1 PHYSICAL RESERVE_WAL" in log
    assert "replication=true" in log
    assert (pgdata / "PG_VERSION").exists() and (pgdata / "standby.signal").exists()
    assert not (pgdata.parent / "basebackup.partial").exists()
    # The image's entrypoint gets the server's arguments, without the password in its environment.
    assert "docker-entrypoint.sh postgres -c config_file=x" in log
    assert "env-password=unset" in result.stdout
    # `:` and `\` escaped, owner-only.
    assert passfile.read_text() == f"{spec.primary_name}:{spec.port}:replication:{spec.replication_user}:a\\:b\\\\c\n"
    assert stat.S_IMODE(passfile.stat().st_mode) == 0o600


@pytest.mark.skipif(shutil.which("sh") is None, reason="no POSIX sh on this machine")
def test_replica_with_data_just_starts(tmp_path: Path, stubs: tuple[Path, Path, Stub]) -> None:
    bin_dir, calls, _ = stubs
    pgdata = tmp_path / "volume" / "pgdata"
    pgdata.mkdir(parents=True)
    (pgdata / "PG_VERSION").write_text("16\n")
    result, passfile = run_replica_entrypoint(tmp_path, bin_dir, pgdata)
    assert result.returncode == 0, result.stderr
    log = calls.read_text()
    assert "pg_basebackup" not in log and "pg_isready" not in log
    assert "docker-entrypoint.sh postgres" in log
    assert passfile.exists(), "the passfile is rewritten on every start, so a rotated password applies"


@pytest.mark.skipif(shutil.which("sh") is None, reason="no POSIX sh on this machine")
def test_replica_waits_for_the_primary_a_bounded_number_of_times(
    tmp_path: Path, stubs: tuple[Path, Path, Stub]
) -> None:
    bin_dir, calls, _ = stubs
    (bin_dir / "pg_isready").write_text(f'#!/bin/sh\nprintf "%s\\n" "pg_isready" >> "{calls}"\nexit 2\n')
    result, _ = run_replica_entrypoint(tmp_path, bin_dir, tmp_path / "volume" / "pgdata")
    assert result.returncode != 0
    log = calls.read_text()
    assert log.count("pg_isready") == config.READY_ATTEMPTS
    assert "pg_basebackup" not in log and "docker-entrypoint.sh" not in log
    assert "not accepting connections" in result.stderr


@pytest.mark.skipif(shutil.which("sh") is None, reason="no POSIX sh on this machine")
def test_replica_refuses_to_seed_over_foreign_files(tmp_path: Path, stubs: tuple[Path, Path, Stub]) -> None:
    bin_dir, calls, _ = stubs
    pgdata = tmp_path / "volume" / "pgdata"
    pgdata.mkdir(parents=True)
    (pgdata / "something").write_text("x")
    result, _ = run_replica_entrypoint(tmp_path, bin_dir, pgdata)
    assert result.returncode != 0
    assert "refusing" in result.stderr
    assert "pg_basebackup" not in calls.read_text()


@pytest.mark.skipif(shutil.which("sh") is None, reason="no POSIX sh on this machine")
def test_replica_drops_a_seed_whose_conninfo_holds_a_password(
    tmp_path: Path, stubs: tuple[Path, Path, Stub]
) -> None:
    bin_dir, calls, _ = stubs
    (bin_dir / "pg_basebackup").write_text(
        '#!/bin/sh\nd=${1#--pgdata=}; mkdir -p "$d"; echo 15 > "$d/PG_VERSION"; '
        "echo \"primary_conninfo = 'user=r password=leaked'\" > \"$d/postgresql.auto.conf\"\n"
    )
    pgdata = tmp_path / "volume" / "pgdata"
    result, _ = run_replica_entrypoint(tmp_path, bin_dir, pgdata)
    assert result.returncode != 0
    assert not pgdata.exists() and not (pgdata.parent / "basebackup.partial").exists()
    assert "docker-entrypoint.sh" not in calls.read_text()


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash (the image's entrypoint shell) here")
@pytest.mark.parametrize("missing", [config.APP_PASSWORD_ENV, config.REPLICATION_PASSWORD_ENV])
def test_init_sourced_by_the_entrypoint_stops_it_without_a_password(
    missing: str, tmp_path: Path, stubs: tuple[Path, Path, Stub]
) -> None:
    bin_dir, calls, stub = stubs
    stub("psql")
    init = tmp_path / "init.sh"
    init.write_text(config.render_primary_init_script(pg_spec()))
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", config.APP_PASSWORD_ENV: "a",
           config.REPLICATION_PASSWORD_ENV: "r"}
    env.pop(missing)
    # As the image's entrypoint does with a *.sh it may not execute: source it under `set -Eeo pipefail`.
    entrypoint = 'set -Eeo pipefail; . "$1"; echo entrypoint-continued'
    result = subprocess.run(["bash", "-c", entrypoint, "_", str(init)], env=env, capture_output=True, text=True,
                            check=False)
    assert result.returncode != 0
    assert "entrypoint-continued" not in result.stdout
    assert missing in result.stderr
    assert "psql" not in calls.read_text()


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash (the image's entrypoint shell) here")
def test_init_sourced_leaves_the_entrypoint_shell_as_it_was(tmp_path: Path, stubs: tuple[Path, Path, Stub]) -> None:
    bin_dir, calls, stub = stubs
    stub("psql")
    init = tmp_path / "init.sh"
    init.write_text(config.render_primary_init_script(pg_spec()))
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", config.APP_PASSWORD_ENV: "a",
           config.REPLICATION_PASSWORD_ENV: "r"}
    entrypoint = 'set -Eeo pipefail; . "$1"; echo "continued options=$-"; echo "${UNSET_VARIABLE}"'
    result = subprocess.run(["bash", "-c", entrypoint, "_", str(init)], env=env, capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr
    # `set -u` inside the script must not leak into the entrypoint (it reads unset variables later).
    assert "continued options=" in result.stdout
    assert "u" not in result.stdout.split("continued options=")[1].split()[0]
    assert "psql -v ON_ERROR_STOP=1" in calls.read_text()
