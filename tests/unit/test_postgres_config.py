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
        "entrypoint": config.render_entrypoint(spec),
        "health": config.health_command(spec),
    }
    for i in range(1, spec.replicas + 1):
        texts[f"replica-{i}.conf"] = config.render_postgresql_conf(spec, i)
        texts[f"replica-{i}-entrypoint"] = config.render_entrypoint(spec, i)
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
        config.render_entrypoint(spec, 0)


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
    assert any(r[0] == "local" and r[-1] == "trust" for r in rows), "the entrypoint's reconciliation needs it"


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


# ---- what the primary reconciles at every start ------------------------------------------------


@pytest.mark.parametrize("tier", TIERS)
def test_one_slot_per_replica_named_after_it(tier: str) -> None:
    spec = pg_spec(tier)
    sql = config.render_reconcile_sql(spec)
    # Reserved at creation (immediately_reserve => true): WAL is held before the replica's first use; only
    # where the slot is missing, since this runs at every start.
    created = re.findall(r"pg_create_physical_replication_slot\('([a-z0-9_]+)', true\) "
                         r"WHERE NOT EXISTS \(SELECT FROM pg_replication_slots WHERE slot_name = '\1'\)", sql)
    assert created == [config.slot_name(r) for r in spec.replica_names]
    assert len(set(created)) == spec.replicas
    for i, slot in enumerate(created, start=1):
        assert re.search(rf"^slot={slot}$", config.render_entrypoint(spec, i), re.M)


def test_slots_of_replicas_the_spec_no_longer_has_are_dropped_when_inactive() -> None:
    sql = config.render_reconcile_sql(pg_spec("medium"))
    drop = sql[sql.index("pg_drop_replication_slot"):]
    # Only our own naming, only inactive ones, never one the spec still has.
    assert "slot_name ~ '^postgres_replica_[0-9]+$'" in drop
    assert "NOT active" in drop
    assert "ARRAY['postgres_replica_1', 'postgres_replica_2']" in drop
    assert re.search(r"^postgres_replica_[0-9]+$", config.slot_name("postgres-replica-12"))
    small = config.render_reconcile_sql(pg_spec("small"))
    assert "ARRAY[]::text[]" in small, "no replica: every slot of ours that is inactive goes"


def test_slot_names_are_valid_identifiers() -> None:
    assert config.slot_name("postgres-replica-1") == "postgres_replica_1"
    assert re.fullmatch(r"[a-z0-9_]{1,63}", config.slot_name("x" * 80 + "-replica-15"))


def test_reconcile_creates_what_is_missing_and_resets_passwords_every_time() -> None:
    spec = pg_spec(user="app-user", database="app-db")
    sql = config.render_reconcile_sql(spec)
    assert ("SELECT format('CREATE ROLE %I', 'app-user') WHERE NOT EXISTS "
            "(SELECT FROM pg_roles WHERE rolname = 'app-user')\n\\gexec") in sql
    assert 'ALTER ROLE "app-user" WITH LOGIN NOSUPERUSER NOREPLICATION PASSWORD :\'app_password\';' in sql
    assert (f'ALTER ROLE "{spec.replication_user}" WITH LOGIN NOSUPERUSER REPLICATION '
            "PASSWORD :'replication_password';") in sql
    assert "SELECT format('CREATE DATABASE %I OWNER %I', 'app-db', 'app-user')" in sql
    assert "WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'app-db')" in sql
    # Nothing here may fail on its second run: every CREATE is guarded.
    assert not re.search(r"^CREATE ", sql, re.M)


@pytest.mark.parametrize("role", ["user", "replication_user"])
def test_the_superuser_name_is_not_reused(role: str) -> None:
    with pytest.raises(ValueError, match="superuser"):
        config.render_reconcile_sql(pg_spec(**{role: config.SUPERUSER}))


def test_roles_must_differ() -> None:
    spec = pg_spec()
    with pytest.raises(ValueError, match="differ"):
        config.render_entrypoint(pg_spec(user=spec.replication_user), 1)


# ---- no secrets, valid shell -------------------------------------------------------------------


@pytest.mark.parametrize("tier", TIERS)
def test_no_secret_material_in_rendered_text(tier: str) -> None:
    for name, text in all_texts(pg_spec(tier)).items():
        # The replica's own guard greps for the very pattern it forbids; the health check hands psql the
        # application's password from the container's environment, by reference.
        by_reference = f'PGPASSWORD="${config.APP_PASSWORD_ENV}"'
        lines = [line.replace(by_reference, "") for line in text.splitlines() if "grep -q 'password='" not in line]
        assert not any(re.search(r"password\s*=", line, re.I) for line in lines), name
        assert not re.search(r"PASSWORD\s+'", text), name
        assert "mocksecret" not in text, name
    entrypoint = config.render_entrypoint(pg_spec(tier))
    # Passwords reach psql from the environment only.
    assert f'"${config.APP_PASSWORD_ENV}"' in entrypoint
    assert f'"${config.REPLICATION_PASSWORD_ENV}"' in entrypoint


@pytest.mark.skipif(shutil.which("sh") is None, reason="no POSIX sh on this machine")
@pytest.mark.parametrize("tier", TIERS)
def test_scripts_parse_with_sh_n(tier: str, tmp_path: Path) -> None:
    spec = pg_spec(tier)
    scripts = {"primary.sh": config.render_entrypoint(spec)}
    scripts |= {f"replica-{i}.sh": config.render_entrypoint(spec, i) for i in range(1, spec.replicas + 1)}
    scripts["health.sh"] = config.health_command(spec, 1) if spec.replicas else config.health_command(spec)
    for name, text in scripts.items():
        path = tmp_path / name
        path.write_text(text)
        result = subprocess.run(["sh", "-n", str(path)], capture_output=True, text=True, check=False)
        assert result.returncode == 0, f"{name}: {result.stderr}"


def test_health_checks_authenticate_as_the_app_over_tcp_and_replicas_check_recovery() -> None:
    spec = pg_spec()
    primary = config.health_command(spec)
    # The entrypoint's temporary server listens on the socket only, and reconciles before the real one
    # listens on TCP: a TCP login as the application proves its role, password and database.
    for check in (primary, config.health_command(spec, 1)):
        assert "-h 127.0.0.1" in check and f"-p {spec.port}" in check
        assert f"-U {spec.user} -d {spec.database}" in check
        assert f'PGPASSWORD="${config.APP_PASSWORD_ENV}"' in check
    assert "'SELECT 1')\" = 1 ]" in primary and "pg_is_in_recovery" not in primary
    assert "'SELECT pg_is_in_recovery()')\" = t ]" in config.health_command(spec, 1)


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

    for name in ("psql", "sleep", "chown", "pg_ctl"):
        stub(name)
    # Run as root, the script steps down through gosu (or su-exec): the stand-in just runs the command.
    for name in ("gosu", "su-exec"):
        stub(name, 'shift; exec "$@"')
    stub("pg_isready")
    # pg_basebackup and initdb write what the real ones would: a data directory (with -R's files).
    stub("pg_basebackup", 'd=${1#--pgdata=}; mkdir -p "$d"; echo 15 > "$d/PG_VERSION"; touch "$d/standby.signal"; '
                          "echo \"primary_slot_name = 'x'\" > \"$d/postgresql.auto.conf\"")
    stub("initdb", 'd=${1#--pgdata=}; mkdir -p "$d"; echo 15 > "$d/PG_VERSION"')
    stub("postgres", 'echo "env-password=${POSTGRES_REPLICATION_PASSWORD:-unset}"')
    return bin_dir, calls, stub


def _entrypoint(tmp_path: Path, replica: int | None) -> Path:
    """The rendered entrypoint, with only the socket directory (and the passfile in it) moved into the test's
    temporary directory: the script creates and chmods it."""
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    script = config.render_entrypoint(pg_spec("medium"), replica).replace(config.SOCKET_DIR, str(run))
    path = tmp_path / "entrypoint.sh"
    path.write_text(script)
    return path


def run_primary_entrypoint(tmp_path: Path, bin_dir: Path, pgdata: Path,
                           **env_changes: str | None) -> subprocess.CompletedProcess[str]:
    env: dict[str, str | None] = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "PGDATA": str(pgdata),
                                  "PGPORT": "5432", config.APP_PASSWORD_ENV: "app",
                                  config.REPLICATION_PASSWORD_ENV: "repl", **env_changes}
    return subprocess.run(["sh", str(_entrypoint(tmp_path, None)), "postgres", "-c", "config_file=x"],
                          env={k: v for k, v in env.items() if v is not None}, capture_output=True, text=True,
                          check=False, timeout=60)


def run_replica_entrypoint(tmp_path: Path, bin_dir: Path, pgdata: Path, password: str = "pw",
                           **extra_env: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    path = _entrypoint(tmp_path, 1)
    passfile = Path(config.REPLICATION_PASSFILE.replace(config.SOCKET_DIR, str(tmp_path / "run")))
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "PGDATA": str(pgdata), "PGPORT": "5432",
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
    assert not (pgdata.parent / "replica.partial").exists()
    # The server gets its arguments, without the password in its environment.
    assert "\npostgres -c config_file=x\n" in log
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
    assert "\npostgres -c config_file=x\n" in log
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
    assert "pg_basebackup" not in log and "\npostgres " not in log
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
    assert not pgdata.exists() and not (pgdata.parent / "replica.partial").exists()
    assert "\npostgres " not in calls.read_text()


needs_sh = pytest.mark.skipif(shutil.which("sh") is None, reason="no POSIX sh on this machine")


@needs_sh
def test_primary_initialises_an_empty_volume_atomically_then_reconciles_then_starts(
        tmp_path: Path, stubs: tuple[Path, Path, Stub]) -> None:
    bin_dir, calls, _ = stubs
    pgdata = tmp_path / "volume" / "pgdata"
    result = run_primary_entrypoint(tmp_path, bin_dir, pgdata)
    assert result.returncode == 0, result.stderr
    log = calls.read_text().splitlines()
    initdb = next(line for line in log if line.startswith("initdb"))
    # Into a staging directory beside PGDATA, renamed into place only once complete.
    assert f"--pgdata={pgdata.parent / 'primary.partial'}" in initdb
    assert "--data-checksums" in initdb and "--username=postgres" in initdb
    assert (pgdata / "PG_VERSION").exists() and not (pgdata.parent / "primary.partial").exists()
    starts = [i for i, line in enumerate(log) if line.startswith("pg_ctl") and line.endswith(" start")]
    stops = [i for i, line in enumerate(log) if line.startswith("pg_ctl") and " stop" in line]
    reconcile = next(i for i, line in enumerate(log) if line.startswith("psql") and "--dbname postgres" in line)
    server = log.index("postgres -c config_file=x")
    assert starts[0] < reconcile < stops[0] < server
    assert "listen_addresses=''" in log[starts[0]], "the temporary server listens on the socket only"
    assert "env-password=unset" in result.stdout, "the replication password stays out of the server's env"


@needs_sh
def test_primary_with_data_reconciles_at_every_start(tmp_path: Path, stubs: tuple[Path, Path, Stub]) -> None:
    """A retained volume under new passwords (destroy, then up) or a first init cut short before its roles
    existed: either way the roles, passwords, database and slots are made true before the server starts."""
    bin_dir, calls, _ = stubs
    pgdata = tmp_path / "volume" / "pgdata"
    pgdata.mkdir(parents=True)
    (pgdata / "PG_VERSION").write_text("16\n")
    result = run_primary_entrypoint(tmp_path, bin_dir, pgdata)
    assert result.returncode == 0, result.stderr
    log = calls.read_text()
    assert "initdb" not in log
    assert "--dbname postgres" in log and "\npostgres -c config_file=x\n" in log


@needs_sh
def test_primary_redoes_an_init_that_was_cut_short(tmp_path: Path, stubs: tuple[Path, Path, Stub]) -> None:
    bin_dir, calls, _ = stubs
    pgdata = tmp_path / "volume" / "pgdata"
    half = pgdata.parent / "primary.partial"
    half.mkdir(parents=True)
    (half / "base").mkdir()  # what a killed initdb leaves: files, and no PG_VERSION where PGDATA is
    result = run_primary_entrypoint(tmp_path, bin_dir, pgdata)
    assert result.returncode == 0, result.stderr
    assert "initdb" in calls.read_text()
    assert (pgdata / "PG_VERSION").exists() and not (pgdata / "base").exists()


@needs_sh
def test_primary_refuses_to_initialise_over_foreign_files(tmp_path: Path, stubs: tuple[Path, Path, Stub]) -> None:
    bin_dir, calls, _ = stubs
    pgdata = tmp_path / "volume" / "pgdata"
    pgdata.mkdir(parents=True)
    (pgdata / "something").write_text("x")
    result = run_primary_entrypoint(tmp_path, bin_dir, pgdata)
    assert result.returncode != 0 and "refusing" in result.stderr
    assert "initdb" not in calls.read_text()


@needs_sh
def test_a_failed_reconciliation_stops_the_temporary_server_and_never_starts(
        tmp_path: Path, stubs: tuple[Path, Path, Stub]) -> None:
    bin_dir, calls, stub = stubs
    stub("psql", 'echo "ERROR:  permission denied" >&2; exit 3')
    result = run_primary_entrypoint(tmp_path, bin_dir, tmp_path / "volume" / "pgdata")
    assert result.returncode != 0
    log = calls.read_text()
    assert " stop" in log.split("psql", 1)[1], "the temporary server is stopped on the way out"
    assert "\npostgres " not in log


@needs_sh
@pytest.mark.parametrize("missing", [config.APP_PASSWORD_ENV, config.REPLICATION_PASSWORD_ENV])
def test_the_primary_does_not_start_without_a_password(
        missing: str, tmp_path: Path, stubs: tuple[Path, Path, Stub]) -> None:
    bin_dir, calls, _ = stubs
    result = run_primary_entrypoint(tmp_path, bin_dir, tmp_path / "volume" / "pgdata", **{missing: None})
    assert result.returncode != 0
    assert missing in result.stderr
    assert calls.read_text() == "", "nothing ran: no initdb, no server"
