"""Debian's PostgreSQL and pgBackRest as the dev stack with backups on: the rendered primary (archive_command,
pgbackrest.conf, the entrypoint) and the rendered backup container (banyan-backup.sh), each its own host, sharing
the volumes their containers share (the primary's data volume, with the socket and the archive queue; the local
repository's volume). Then a point-in-time restore through the primary's own entrypoint (the stack's restore
setting), the drill command against the backups, and archiving broken on purpose.

Hosts share a volume the way containers do: the second host bind-mounts the first host's directory for it. Unlike
containers the hosts share /tmp, where pgBackRest keeps its locks: stricter than Docker (commands of both hosts
serialise as on one machine), never looser.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from components.postgres import alerts
from components.postgres import backup as pg_backup
from model.spec import PlatformSpec
from testkit import RecordedResource, Rendering, render_stack, unwrap
from testkit.netns import Host, Network, traversable, wait_until
from tests.helpers import env_of, spec_for, uploads
from tests.servers.conftest import (
    clean_env,
    container,
    make_dir,
    report,
    require_binary,
    require_netns,
    server_versions,
)
from tooling import drill

pytestmark = pytest.mark.servers

PRIMARY = "postgres-primary"
BACKUP = "postgres-backup"
SOCKET_DIR = "/var/run/postgresql"
BOOT_TIMEOUT_S = 90.0
BACKUP_TIMEOUT_S = 120.0
ROWS_BEFORE = 500
ROWS_AFTER = 300


def _render(**sets: Any) -> Rendering:
    versions = server_versions()
    assert versions.postgres
    return render_stack("dev", set={
        "tier": "small", **versions.stack_sets(),
        # An image with PostgreSQL and pgBackRest (the official one has no pgBackRest; the resolver says so).
        "postgres.image": f"banyan-local/postgres:{versions.postgres}",
        "postgres.backup.enabled": True,
        **sets,
    })


def _spec() -> PlatformSpec:
    versions = server_versions()
    return spec_for("dev", tier="small", postgres__image=f"banyan-local/postgres:{versions.postgres}",
                    postgres__version=versions.postgres, postgres__backup__enabled=True)


@dataclass
class Box:
    """One container as a host: its files, env, volumes, command, health check."""

    host: Host
    resource: RecordedResource
    env: dict[str, str]
    binds: list[str]
    argv: list[str]
    health: str
    log: Path

    def start(self) -> None:
        self.host.spawn(self.argv, binds=self.binds, log=self.log)

    def healthy(self) -> bool:
        done = self.host.run(clean_env(self.env, ["sh", "-c", self.health]), binds=self.binds, timeout=30,
                             check=False)
        return done.returncode == 0

    def run(self, argv: Sequence[str], timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        """As `docker exec` runs a command: as root, with the container's environment."""
        return self.host.run(clean_env(self.env, argv), binds=self.binds, timeout=timeout, check=check)

    def stdout(self, argv: Sequence[str]) -> str:
        return self.run(argv).stdout

    def sql(self, query: str, database: str = "postgres") -> str:
        argv = ["psql", "-X", "-w", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-h", SOCKET_DIR,
                "-p", self.env.get("PGPORT", "5432"), "-U", "postgres", "-d", database, "-c", query]
        return self.run(argv).stdout.strip()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""


def _box(host: Host, resource: RecordedResource, shared: Mapping[str, Host] = {}) -> Box:
    """`shared`: container path of a volume -> the host whose directory for it this one uses."""
    inputs: dict[str, Any] = unwrap(resource.inputs)
    for path, (content, executable) in uploads(resource).items():
        host.write(path, content, 0o744 if executable else 0o644)
    make_dir(host, "/var/lib/postgresql", 0o755, "postgres")
    make_dir(host, SOCKET_DIR, 0o755, "root")
    volumes = [v["containerPath"] for v in inputs.get("volumes") or []]
    if shared:
        own_path = host.path

        def shared_path(container_path: str) -> Path:
            """A shared volume's container path is the other host's directory: the bind mount's source."""
            for volume, other in shared.items():
                if container_path == volume or container_path.startswith(volume + "/"):
                    return other.path(container_path)
            return own_path(container_path)

        host.path = shared_path  # type: ignore[method-assign]
    for path in volumes:
        if path in shared:
            # The mount point inside this host's own directories (under /var/lib/postgresql, itself bound).
            (host.root / path.lstrip("/")).mkdir(parents=True, exist_ok=True)
        else:
            # A new named volume takes the image directory's owner and mode.
            make_dir(host, path, 0o1777 if path.startswith("/var/lib/postgresql") else 0o755, "postgres")
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
           "HOME": "/root", "HOSTNAME": host.name, **env_of(resource)}
    dirs = {str(Path(p).parent) for p in uploads(resource)}
    binds = sorted({*dirs, SOCKET_DIR, "/var/lib/postgresql", *volumes})
    test = list(inputs["healthcheck"]["tests"])
    assert test[0] == "CMD-SHELL", test
    argv = clean_env(env, [*inputs["entrypoints"], *(inputs.get("command") or [])])
    return Box(host=host, resource=resource, env=env, binds=binds, argv=argv, health=test[1],
               log=host.root / "container.log")


def _wait_healthy(box: Box, timeout: float) -> float:
    try:
        return wait_until(box.healthy, timeout=timeout, what=f"{box.host.name} healthy")
    except AssertionError as err:
        raise AssertionError(f"{err}\n{box.log_text()}") from None


def _metrics(backup: Box) -> dict[str, float]:
    text = backup.stdout([pg_backup.BACKUP_SCRIPT, "metrics"])
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def _backups(backup: Box) -> list[dict[str, Any]]:
    stanza = _rendered_stanza(backup.resource)
    out = backup.stdout(["pgbackrest", f"--config={pg_backup.PGBACKREST_CONF}", f"--stanza={stanza}",
                         "--output=json", "info"])
    return list(json.loads(out)[0].get("backup") or [])


def _rendered_stanza(resource: RecordedResource) -> str:
    conf = uploads(resource)[pg_backup.PGBACKREST_CONF].content
    sections = [line.strip("[]") for line in conf.splitlines() if line.startswith("[") and line != "[global]"]
    assert len(sections) == 1, sections
    return sections[0]


def _archived_through(primary: Box, walfile: str) -> bool:
    last = primary.sql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
    return last >= walfile


@dataclass
class Scene:
    net: Network
    rendering: Rendering
    spec: PlatformSpec
    primary: Box
    backup: Box
    database: str
    target_time: str
    rows_before: int
    rows_total: int


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    require_netns()
    require_binary("postgres", "/usr/lib/postgresql/*/bin/postgres")
    require_binary("pgbackrest")
    require_binary("setpriv")
    rendering = _render()
    workdir = traversable(tmp_path_factory.mktemp("pgbackup"))
    with Network(workdir, "pgbk") as net:
        primary_res, backup_res = container(rendering, PRIMARY), container(rendering, BACKUP)
        primary = _box(net.add(PRIMARY), primary_res)
        backup_volume = pg_backup.BACKUP_MOUNT
        data_volume = next(v["containerPath"] for v in unwrap(primary_res.inputs)["volumes"]
                           if v["containerPath"] != backup_volume)
        backup = _box(net.add(BACKUP), backup_res, shared={data_volume: primary.host, backup_volume: primary.host})
        primary.start()
        _wait_healthy(primary, BOOT_TIMEOUT_S)
        database = env_of(container(rendering, "user-service-1"))["DATABASE_URL"].rsplit("/", 1)[-1]

        # The backup container's first round: the stanza, then a full backup (none exists yet).
        started = time.monotonic()
        backup.start()
        _wait_healthy(backup, BOOT_TIMEOUT_S)
        try:
            wait_until(lambda: bool(_backups(backup)) and not backup.host.path(
                f"{pg_backup.METRICS_DIR}/backup.running").exists(), timeout=BACKUP_TIMEOUT_S, what="a full backup",
                interval=0.5)
        except AssertionError as err:
            raise AssertionError(f"{err}\n{backup.log_text()}") from None
        report(f"postgres backup: the backup container's first full backup (pgBackRest "
               f"{backup.stdout(['pgbackrest', 'version']).split()[-1]}) done {time.monotonic() - started:.2f} s "
               "after it started")

        # A point-in-time restore starts from a backup that stopped before the target, and pgBackRest records
        # stop times in whole seconds: the first batch begins once the server's clock is past the newest
        # backup's recorded stop (a restore would otherwise find "no backup set with stop time less than" it).
        newest_stop = max(int(b["timestamp"]["stop"]) for b in _backups(backup))
        wait_until(lambda: primary.sql(f"SELECT clock_timestamp() > to_timestamp({newest_stop + 1})") == "t",
                   timeout=10, what="the clock to pass the newest backup's recorded stop")
        # Writes continue after the backup; a time is taken between two batches.
        primary.sql("CREATE TABLE orders (id bigint PRIMARY KEY, note text NOT NULL)", database)
        primary.sql(f"INSERT INTO orders SELECT g, 'before' FROM generate_series(1, {ROWS_BEFORE}) g", database)
        target = primary.sql("SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', "
                             "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
        # Commit timestamps are the server's clock: the next batch commits strictly later than the target.
        wait_until(lambda: primary.sql(f"SELECT clock_timestamp() > '{target}'::timestamptz") == "t", timeout=5,
                   what="the clock to pass the target")
        primary.sql(f"INSERT INTO orders SELECT g, 'after' FROM generate_series({ROWS_BEFORE + 1}, "
                    f"{ROWS_BEFORE + ROWS_AFTER}) g", database)
        walfile = primary.sql("SELECT pg_walfile_name(pg_switch_wal())")
        wait_until(lambda: _archived_through(primary, walfile), timeout=60, what=f"WAL {walfile} archived")
        yield Scene(net=net, rendering=rendering, spec=_spec(), primary=primary, backup=backup, database=database,
                    target_time=target, rows_before=ROWS_BEFORE, rows_total=ROWS_BEFORE + ROWS_AFTER)


def test_rendered_archiving_is_what_the_primary_runs(scene: Scene) -> None:
    """The server runs the rendered archive_command (pgBackRest into the stanza) and has archived through it."""
    assert scene.primary.sql("SHOW archive_mode") == "on"
    command = scene.primary.sql("SHOW archive_command")
    assert command.startswith("pgbackrest ") and f"--stanza={_rendered_stanza(scene.primary.resource)}" in command
    archived = scene.primary.sql("SELECT archived_count FROM pg_stat_archiver")
    assert int(archived) > 0, "nothing was archived"
    metrics = _metrics(scene.backup)
    assert metrics["banyan_postgres_wal_archive_failing"] == 0, metrics
    # What Prometheus scrapes: the same text over HTTP from the backup container's host name, as text/plain.
    host, port = alerts.scrape_target(scene.spec) or ("", 0)
    url = f"http://{host}:{port}{pg_backup.METRICS_HTTP_PATH}"
    fetch = (f"import urllib.request as u; r = u.urlopen({url!r}, timeout=10); "
             "print(r.headers['Content-Type']); print(r.read().decode())")
    served = wait_until(lambda: scene.primary.run(["python3", "-c", fetch], check=False).returncode == 0,
                        timeout=30, what="the metrics endpoint")
    assert served < 30
    text = scene.primary.run(["python3", "-c", fetch]).stdout
    assert text.startswith("text/plain") and "banyan_postgres_wal_archived_total" in text, text
    assert metrics["banyan_postgres_backup_last_full_timestamp_seconds"] > time.time() - 600, metrics
    assert metrics["banyan_postgres_up"] == 1


def test_the_drill_restores_the_point_in_time_and_reports_success(scene: Scene) -> None:
    """`python -m tooling.drill` as the stack runs it (here through the hosts instead of `docker exec`)."""
    result, failures, took = drill.run(scene.backup.stdout, scene.primary.stdout, database=scene.database,
                                       target_time=scene.target_time)
    assert failures == [], drill.summary(result, failures, took)
    assert result.tables == {"public.orders": scene.rows_before}, result.tables
    assert result.recovery_point is not None
    print(drill.summary(result, failures, took))
    report(f"postgres drill: restore to {scene.target_time} in a throwaway instance took "
           f"{result.restore_ms / 1000:.2f} s ({took:.2f} s with checks and cleanup); recovery point "
           f"{result.recovery_point.isoformat()}")
    # The throwaway instance is gone, and nothing of it was archived into the repository.
    assert not any(scene.backup.host.path(f"{pg_backup.BACKUP_MOUNT}/drill").iterdir())


def test_the_drill_to_the_latest_point_holds_every_row(scene: Scene) -> None:
    result, failures, took = drill.run(scene.backup.stdout, scene.primary.stdout, database=scene.database,
                                       target_time=None)
    assert failures == [], drill.summary(result, failures, took)
    assert result.tables == {"public.orders": scene.rows_total}, result.tables
    report(f"postgres drill: restore to the latest point took {result.restore_ms / 1000:.2f} s")


def test_archiving_broken_on_purpose_raises_the_alert_condition(scene: Scene) -> None:
    """The repository made unwritable: the archiver fails, and the metric the alert reads says so."""
    archive = scene.primary.host.path(f"{pg_backup.LOCAL_REPO_PATH}/archive")
    modes = {p: p.stat().st_mode for p in [archive, *archive.rglob("*")] if p.is_dir()}
    try:
        for path in modes:
            path.chmod(0o555)
        scene.primary.sql("CREATE TABLE IF NOT EXISTS churn (id int)", scene.database)
        scene.primary.sql("INSERT INTO churn SELECT generate_series(1, 1000)", scene.database)
        scene.primary.sql("SELECT pg_switch_wal()")
        try:
            took = wait_until(lambda: _metrics(scene.backup).get("banyan_postgres_wal_archive_failing") == 1,
                              timeout=90, what="the archive-failing metric", interval=1)
        except AssertionError as err:
            raise AssertionError(f"{err}\n{scene.primary.log_text()}") from None
        failed = scene.primary.sql("SELECT failed_count FROM pg_stat_archiver")
        assert int(failed) > 0
        report(f"postgres archive: repository made unwritable; banyan_postgres_wal_archive_failing = 1 after "
               f"{took:.2f} s (the alert fires once it holds for 5 minutes); {failed} failed attempts")
    finally:
        for path, mode in modes.items():
            path.chmod(mode)
    walfile = scene.primary.sql("SELECT pg_walfile_name(pg_switch_wal())")
    wait_until(lambda: _archived_through(scene.primary, walfile), timeout=120, what="archiving to recover")


def test_point_in_time_restore_into_a_new_data_directory_gives_exactly_the_rows_before(
        scene: Scene, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Last: the restored primary archives a new timeline, which a later restore to the latest point would follow.
    The stack's restore setting: a new primary on an empty volume restores from the repository up to the time
    taken between the two batches, and holds exactly the first batch; its roles are this deployment's."""
    rendering = _render(**{"postgres.restore.enabled": True,
                           "postgres.restore.target_time": json.dumps(scene.target_time)})
    restored_res = container(rendering, PRIMARY)
    workdir = traversable(tmp_path_factory.mktemp("pgrestore"))
    with Network(workdir, "pgrs") as net:
        restored = _box(net.add(PRIMARY), restored_res, shared={pg_backup.BACKUP_MOUNT: scene.primary.host})
        started = time.monotonic()
        restored.start()
        took = _wait_healthy(restored, 300)
        full_log = restored.log.read_text(errors="replace")
        assert "restoring /var/lib" in full_log and "recovered; the server is on a new timeline" in full_log, full_log
        count = restored.sql("SELECT count(*), count(*) FILTER (WHERE note = 'after') FROM orders", scene.database)
        assert count == f"{scene.rows_before}|0", f"restored rows (all|after the target): {count}"
        assert restored.sql("SELECT pg_is_in_recovery()") == "f"
        report(f"postgres restore: point-in-time restore to {scene.target_time} into an empty data directory "
               f"(pgBackRest restore, recovery, promotion, roles reconciled) healthy in {took:.2f} s; "
               f"{scene.rows_before} of {scene.rows_total} rows, exactly those committed before the target")
        # Started again, the restored primary starts on its data: the restore is not repeated.
        restored.host.kill_all()
        restored.start()
        _wait_healthy(restored, BOOT_TIMEOUT_S)
        assert restored.log.read_text(errors="replace").count("restoring /var/lib") == 1, restored.log_text()
        assert time.monotonic() - started < 600
