"""Debian's PostgreSQL as the MEDIUM dev stack's primary and two streaming replicas, from the rendered files.

Hosts (each its own network namespace, named as the containers): `postgres-primary`, `postgres-replica-1`,
`postgres-replica-2`, and `user-service-1`, an application instance that connects with the very
DATABASE_URL / DATABASE_REPLICA_URLS the stack gives it. Every server host gets the container's uploads
(postgresql.conf, pg_hba.conf, the entrypoint) as Docker's upload would
write them (root-owned; 0744 when `executable`, else 0644), the container's env exactly as rendered, its
command and entrypoint, and the image's layout: the data volume (an empty postgres-owned directory, as a new
named volume over the image's) and the postgres user's home. Each container starts as root, as the image
does, and the entrypoint drops to the postgres OS user.

Nothing of the official image's machinery is stood in: the containers run banyan's own entrypoint (rendered
from the spec; it owns initdb, reconciles the roles, passwords, database and slots at every start, seeds
replicas, and drops to the postgres user with setpriv here, as with gosu or su-exec in the official images).
The image's ENV is replaced by a plain PATH (Debian's wrappers for psql, pg_isready and pg_basebackup are in
/usr/bin; the entrypoint finds initdb, pg_ctl and postgres under /usr/lib/postgresql/<major>/bin itself) and
LANG=C.UTF-8.
"""

from __future__ import annotations

import pwd
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any
from urllib.parse import urlsplit

import pytest

from components.postgres.config import SUPERUSER
from testkit import RecordedResource, unwrap
from testkit.netns import Host, Network, traversable, wait_until
from tests.helpers import env_of, uploads
from tests.servers.conftest import (
    clean_env,
    container,
    make_dir,
    rendered,
    report,
    require_binary,
    require_netns,
    server_versions,
)

pytestmark = pytest.mark.servers

TIER = "medium"
PRIMARY = "postgres-primary"
REPLICAS = ("postgres-replica-1", "postgres-replica-2")
APP = "user-service-1"
SOCKET_DIR = "/var/run/postgresql"
# Every wait is bounded generously: a broken file shows up as a failure, never as a hang.
BOOT_TIMEOUT_S = 90.0
CATCH_UP_TIMEOUT_S = 60.0
LAG_ROUNDS = 3
ROWS_WHILE_DOWN = 1000

@dataclass
class Instance:
    name: str
    host: Host
    resource: RecordedResource
    env: dict[str, str]
    binds: list[str]
    pgdata: str
    health: str
    argv: list[str]
    log: Path

    def start(self) -> None:
        self.host.spawn(self.argv, binds=self.binds, log=self.log)

    def healthy(self) -> bool:
        """The container's rendered health check (CMD-SHELL), run as Docker runs it: sh -c, as root."""
        done = self.host.run(clean_env(self.env, ["sh", "-c", self.health]), binds=self.binds, timeout=30,
                             check=False)
        return done.returncode == 0

    def sql(self, query: str) -> str:
        """A query as the superuser over the trusted socket (as `docker exec ... psql` would)."""
        argv = ["psql", "-X", "-w", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-h", SOCKET_DIR,
                "-p", self.env["PGPORT"], "-U", "postgres", "-d", "postgres", "-c", query]
        return self.host.run(clean_env(self.env, argv), binds=self.binds).stdout.strip()

    def answers(self, query: str, expected: str) -> Callable[[], bool]:
        """A readiness check on this server's socket."""
        return lambda: self.sql(query) == expected

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass
class Cluster:
    primary: Instance
    replicas: dict[str, Instance]
    app: Host
    app_env: dict[str, str]
    pg_bin: str
    version: int
    bootstrap_s: dict[str, float] = field(default_factory=dict)

    @property
    def database_url(self) -> str:
        return self.app_env["DATABASE_URL"]

    def replica_url(self, name: str) -> str:
        urls = [u for u in self.app_env["DATABASE_REPLICA_URLS"].split(",") if urlsplit(u).hostname == name]
        assert len(urls) == 1, f"DATABASE_REPLICA_URLS names {name} {len(urls)} times"
        return urls[0]

    def psql(self, conninfo: str, *queries: str, password: str | None = None,
             check: bool = True) -> subprocess.CompletedProcess[str]:
        """psql on the application host over TCP; a password only when given (here or in the URL)."""
        argv = ["psql", "-X", "-w", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-d", conninfo]
        for query in queries:
            argv += ["-c", query]
        extra = {"PGPASSWORD": password} if password is not None else {}
        return self.app.run(self.client_env(argv, extra), timeout=60, check=check)

    def client_env(self, argv: Sequence[str], extra: Mapping[str, str] = {}) -> list[str]:
        # No passfile, no inherited PG* variables: only what a connection names itself.
        base = {"PATH": f"{self.pg_bin}:/usr/bin:/bin", "HOME": "/nonexistent", "PGCONNECT_TIMEOUT": "5"}
        return ["env", "-i", *(f"{k}={v}" for k, v in sorted({**base, **extra}.items())), *argv]


def _instance(host: Host, resource: RecordedResource, pg_bin: str) -> Instance:
    inputs: dict[str, Any] = unwrap(resource.inputs)
    # Docker's upload: a root-owned file, 0744 when `executable`, else 0644 (pulumi-docker's tar header).
    for path, (content, executable) in uploads(resource).items():
        host.write(path, content, 0o744 if executable else 0o644)
    # The image's own layer: the postgres user's home (the socket directory the entrypoint makes itself).
    make_dir(host, "/var/lib/postgresql", 0o755, "postgres")
    make_dir(host, SOCKET_DIR, 0o755, "root")
    volumes = [v["containerPath"] for v in inputs.get("volumes") or []]
    assert len(volumes) == 1, f"{host.name}: expected one data volume, got {volumes}"
    # A new named volume takes the image directory's owner and mode (the image makes it postgres, 1777).
    make_dir(host, volumes[0], 0o1777, "postgres")
    container_env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG": "C.UTF-8",
        "HOME": "/root",
        "HOSTNAME": host.name,
        **env_of(resource),
    }
    dirs = {str(Path(p).parent) for p in uploads(resource)}
    binds = sorted({*dirs, SOCKET_DIR, "/var/lib/postgresql", volumes[0]})
    entrypoint = list(inputs["entrypoints"])
    command = list(inputs["command"])
    test = list(inputs["healthcheck"]["tests"])
    assert test[0] == "CMD-SHELL", test
    return Instance(name=host.name, host=host, resource=resource, env=container_env, binds=binds,
                    pgdata=container_env["PGDATA"], health=test[1],
                    argv=clean_env(container_env, [*entrypoint, *command]), log=host.root / "container.log")


def _wait_healthy(instances: Sequence[Instance], timeout: float) -> dict[str, float]:
    """Seconds from now until each instance's own health check first passes."""
    start = time.monotonic()
    took: dict[str, float] = {}
    pending = list(instances)
    while pending:
        for inst in list(pending):
            if inst.healthy():
                took[inst.name] = time.monotonic() - start
                pending.remove(inst)
        if time.monotonic() - start > timeout:
            logs = "\n".join(f"--- {i.name}\n{i.log_text()[-3000:]}" for i in pending)
            raise AssertionError(f"not healthy after {timeout:g}s: {[i.name for i in pending]}\n{logs}")
        if pending:
            time.sleep(0.1)
    return took


@pytest.fixture(scope="module")
def cl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require_netns()
    versions = server_versions()
    require_binary("postgres", "/usr/lib/postgresql/*/bin/postgres")
    require_binary("setpriv")
    assert versions.postgres and versions.postgres_bin
    rendering = rendered(TIER)
    workdir = traversable(tmp_path_factory.mktemp("postgres"))
    with Network(workdir, "pg") as net:
        def make(name: str) -> Instance:
            return _instance(net.add(name), container(rendering, name), versions.postgres_bin or "")

        primary = make(PRIMARY)
        replicas = {name: make(name) for name in REPLICAS}
        app = net.add(APP)
        cl = Cluster(primary=primary, replicas=replicas, app=app, app_env=env_of(container(rendering, APP)),
                     pg_bin=versions.postgres_bin, version=versions.postgres)
        # Docker's order: the replicas depend on a healthy primary (wait=True).
        primary.start()
        took = _wait_healthy([primary], BOOT_TIMEOUT_S)
        report(f"postgres {cl.version} ({TIER}): {PRIMARY} initialised (initdb, then roles, database and slots "
               f"reconciled) and healthy {took[PRIMARY]:.2f} s after start")
        for inst in replicas.values():
            assert not inst.host.path(inst.pgdata).exists(), f"{inst.name}: PGDATA must start empty"
            inst.start()
        cl.bootstrap_s = _wait_healthy(list(replicas.values()), BOOT_TIMEOUT_S)
        for name, seconds in cl.bootstrap_s.items():
            report(f"postgres {cl.version} ({TIER}): {name} bootstrapped from an empty volume (pg_basebackup "
                   f"through its slot) and healthy as a hot standby {seconds:.2f} s after start "
                   f"(both replicas seeding at once)")
        yield cl


def _slot_of(inst: Instance) -> str:
    found = re.findall(r"^slot=(\S+)$", uploads(inst.resource)[_entrypoint_path(inst)][0], re.MULTILINE)
    assert len(found) == 1, found
    return str(found[0])


def _entrypoint_path(inst: Instance) -> str:
    entrypoints = unwrap(inst.resource.inputs).get("entrypoints") or []
    assert len(entrypoints) == 1, entrypoints
    return str(entrypoints[0])


def _streaming(cl: Cluster) -> dict[str, tuple[str, str, str, str]]:
    """application_name -> (state, role, slot in use, client address), as the primary sees its walsenders."""
    rows = cl.primary.sql(
        "SELECT r.application_name, r.state, r.usename, coalesce(s.slot_name, '-'), host(r.client_addr) "
        "FROM pg_stat_replication r LEFT JOIN pg_replication_slots s ON s.active_pid = r.pid ORDER BY 1"
    )
    out: dict[str, tuple[str, str, str, str]] = {}
    for line in rows.splitlines():
        name, state, role, slot, addr = line.split("|")
        out[name] = (state, role, slot, addr)
    return out


def _replication_role(cl: Cluster) -> str:
    """The role the init script created with REPLICATION, as the primary itself knows it."""
    superuser = SUPERUSER
    role = cl.primary.sql(f"SELECT rolname FROM pg_roles WHERE rolreplication AND rolname <> '{superuser}'")
    assert role and "\n" not in role, f"expected one replication role, got {role!r}"
    return role


def _answers(cl: Cluster, url: str, query: str, expected: str) -> Callable[[], bool]:
    """A readiness check: `query` over `url` from the application host answers `expected`."""
    return lambda: cl.psql(url, query, check=False).stdout.strip() == expected


def _server_process_owners(host: Host) -> set[str]:
    """The OS users of the postgres processes in a host's namespace."""
    pids = subprocess.run(["ip", "netns", "pids", host.ns], capture_output=True, text=True, check=True).stdout
    owners = set()
    for pid in pids.split():
        proc = Path("/proc") / pid
        try:
            if proc.joinpath("comm").read_text().strip() == "postgres":
                owners.add(pwd.getpwuid(proc.stat().st_uid).pw_name)
        except FileNotFoundError:
            continue
    return owners


def _url_parts(url: str) -> tuple[str, str, str]:
    parts = urlsplit(url)
    assert parts.username and parts.password and parts.path, url
    return parts.username, parts.password, parts.path.lstrip("/")


def _conninfo(host: str, port: str, user: str, dbname: str, replication: bool = False) -> str:
    extra = " replication=true" if replication else ""
    return f"host={host} port={port} user={user} dbname={dbname}{extra}"


# ---- the primary ---------------------------------------------------------------------------------------


def test_primary_accepts_app_writes_over_tcp_by_host_name(cl: Cluster) -> None:
    """The app's DATABASE_URL (its generated password) reaches postgres-primary:5432 from another host and writes."""
    user, _, database = _url_parts(cl.database_url)
    target = urlsplit(cl.database_url)
    assert (target.hostname, str(target.port)) == (PRIMARY, cl.primary.env["PGPORT"]), cl.database_url
    done = cl.psql(
        cl.database_url,
        "CREATE TABLE IF NOT EXISTS orders (id bigint PRIMARY KEY, note text NOT NULL)",
        "INSERT INTO orders VALUES (1, 'first order') ON CONFLICT (id) DO NOTHING",
        "SELECT current_user, current_database(), host(inet_server_addr()), note FROM orders WHERE id = 1",
    )
    assert done.stdout.strip() == f"{user}|{database}|{cl.primary.host.ip}|first order"
    # The server runs the shipped files, as the postgres OS user, with the init args of the env contract.
    settings = cl.primary.sql(
        "SELECT current_setting('config_file'), current_setting('hba_file'), current_setting('cluster_name'), "
        "current_setting('data_checksums'), pg_is_in_recovery()"
    )
    assert settings == f"/etc/postgresql/postgresql.conf|/etc/postgresql/pg_hba.conf|{PRIMARY}|on|f"
    owners = _server_process_owners(cl.primary.host)
    assert owners == {"postgres"}, owners
    # The entrypoint reconciled before the server listened, and the slots exist, one per replica.
    log = cl.primary.log_text()
    assert "reconciled; starting" in log and log.index("initialising") < log.index("reconciled; starting")
    slots = cl.primary.sql("SELECT slot_name FROM pg_replication_slots WHERE slot_type = 'physical' ORDER BY 1")
    assert slots.split() == sorted(_slot_of(r) for r in cl.replicas.values())


# ---- the replicas ----------------------------------------------------------------------------------


def test_each_replica_streams_through_its_own_slot(cl: Cluster) -> None:
    """pg_stat_replication on the primary lists both replicas, streaming from their hosts, each via its slot."""
    streaming = _streaming(cl)
    role = _replication_role(cl)
    expected = {name: ("streaming", role, _slot_of(inst), inst.host.ip) for name, inst in cl.replicas.items()}
    assert streaming == expected
    for name, inst in cl.replicas.items():
        assert _server_process_owners(inst.host) == {"postgres"}
        seeded = inst.log_text()
        port = inst.env["PGPORT"]
        assert seeded.count(f"{name}: seeding {inst.pgdata} from {PRIMARY}:{port} (slot {_slot_of(inst)})") == 1, \
            seeded[-2000:]
        pgdata = inst.host.path(inst.pgdata)
        assert (pgdata / "standby.signal").exists()
        assert not (pgdata.parent / "basebackup.partial").exists()
        conninfo, slot, recovering = inst.sql(
            "SELECT current_setting('primary_conninfo'), current_setting('primary_slot_name'), pg_is_in_recovery()"
        ).split("|")
        assert recovering == "t" and slot == _slot_of(inst)
        # What pg_basebackup -R wrote: the primary by host name, the replication role, the passfile, no password.
        options = dict(re.findall(r"(\w+)='?((?:[^' \\]|\\.)*)'?", conninfo))
        assert options["host"] == PRIMARY and options["application_name"] == name, options
        assert options["passfile"] and not options["passfile"].startswith(inst.pgdata), options
        assert "password" not in options, options
        assert "password" not in (pgdata / "postgresql.auto.conf").read_text().replace("passfile", "")


def test_replicas_serve_new_rows_read_only_and_report_lag(cl: Cluster) -> None:
    """Rows committed on the primary after bootstrap appear on each replica (polled); writes there fail."""
    cl.psql(cl.database_url,
            "CREATE TABLE IF NOT EXISTS lag_probe (id int PRIMARY KEY, written_at timestamptz NOT NULL "
            "DEFAULT clock_timestamp())")
    for name in cl.replicas:
        wait_until(_answers(cl, cl.replica_url(name), "SELECT to_regclass('lag_probe') IS NOT NULL", "t"),
                   timeout=CATCH_UP_TIMEOUT_S, what=f"lag_probe on {name}")
    lags: dict[str, list[float]] = {name: [] for name in cl.replicas}
    for round_ in range(1, LAG_ROUNDS + 1):
        waiters = {}
        for name in cl.replicas:
            # Polls on the replica every millisecond (each statement a new snapshot) until the row is there,
            # then says how long after its INSERT on the primary it became visible.
            url = f"{cl.replica_url(name)}?application_name=lag-waiter-{round_}"
            argv = cl.client_env(["psql", "-X", "-w", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-d", url,
                                  "-c", "SET statement_timeout = '30s'",
                                  "-c", f"DO $$ BEGIN WHILE NOT EXISTS (SELECT 1 FROM lag_probe WHERE id = {round_}) "
                                        "LOOP PERFORM pg_sleep(0.001); END LOOP; END $$",
                                  "-c", "SELECT round(extract(epoch FROM clock_timestamp() - written_at) * 1000, 2) "
                                        f"FROM lag_probe WHERE id = {round_}"])
            log = cl.app.root / f"lag-{name}-{round_}.out"
            waiters[name] = (cl.app.spawn(argv, log=log), log)
        for name, inst in cl.replicas.items():
            waiting = (f"SELECT count(*) FROM pg_stat_activity WHERE application_name = 'lag-waiter-{round_}' "
                       "AND query LIKE 'DO %'")
            wait_until(inst.answers(waiting, "1"), timeout=30, what=f"the lag waiter on {name}")
        cl.psql(cl.database_url, f"INSERT INTO lag_probe (id) VALUES ({round_})")
        for name, (proc, log) in waiters.items():
            assert proc.wait(timeout=40) == 0, log.read_text()
            lags[name].append(float(log.read_text().strip()))
    for name, values in lags.items():
        report(f"postgres {cl.version} ({TIER}): {name} shows a row committed on {PRIMARY} within "
               f"{median(values):.2f} ms (median of {len(values)}; max {max(values):.2f} ms; INSERT on the "
               f"primary -> first 1 ms poll on the replica that sees it)")
    for name in cl.replicas:
        url = cl.replica_url(name)
        rows = cl.psql(url, f"SELECT count(*) FROM lag_probe WHERE id <= {LAG_ROUNDS}").stdout.strip()
        assert rows == str(LAG_ROUNDS)
        refused = cl.psql(url, "INSERT INTO lag_probe (id) VALUES (1000)", check=False)
        assert refused.returncode != 0
        assert "cannot execute INSERT in a read-only transaction" in refused.stderr, refused.stderr
        refused = cl.psql(url, "CREATE TABLE written_on_a_replica (id int)", check=False)
        assert "read-only transaction" in refused.stderr, refused.stderr


# ---- client authentication -------------------------------------------------------------------------


def test_tcp_connections_without_a_password_are_refused(cl: Cluster) -> None:
    user, password, database = _url_parts(cl.database_url)
    port = cl.primary.env["PGPORT"]
    for inst in (cl.primary, *cl.replicas.values()):
        no_password = cl.psql(_conninfo(inst.name, port, user, database), "SELECT 1", check=False)
        assert no_password.returncode != 0
        # The server asked for a password (SCRAM): nothing in pg_hba.conf lets a TCP client in on trust.
        assert "no password supplied" in no_password.stderr, no_password.stderr
        wrong = cl.psql(_conninfo(inst.name, port, user, database), "SELECT 1", password=password + "x",
                        check=False)
        assert f'password authentication failed for user "{user}"' in wrong.stderr, wrong.stderr
        right = cl.psql(_conninfo(inst.name, port, user, database), "SELECT 1", password=password)
        assert right.stdout.strip() == "1"


def test_pg_hba_superuser_and_replication_rules(cl: Cluster) -> None:
    app_user, app_password, database = _url_parts(cl.database_url)
    superuser = SUPERUSER
    # The bootstrap superuser has no password at all; any password is refused before it is even checked.
    superuser_password = "any-password"
    replication_password = cl.primary.env["POSTGRES_REPLICATION_PASSWORD"]
    replication_user = _replication_role(cl)
    port = cl.primary.env["PGPORT"]
    for inst in (cl.primary, *cl.replicas.values()):
        host = inst.name
        # The superuser never over the network, whatever password it is offered.
        su = cl.psql(_conninfo(host, port, superuser, "postgres"), "SELECT 1", password=superuser_password,
                     check=False)
        assert f'pg_hba.conf rejects connection for host "{cl.app.ip}", user "{superuser}"' in su.stderr, su.stderr
        # The replication role into no database, even with its right password.
        rep_db = cl.psql(_conninfo(host, port, replication_user, database), "SELECT 1",
                         password=replication_password, check=False)
        assert f'rejects connection for host "{cl.app.ip}", user "{replication_user}"' in rep_db.stderr, rep_db.stderr
        # Physical replication: the replication role only, and only with its password.
        ok = cl.psql(_conninfo(host, port, replication_user, "replication", replication=True), "IDENTIFY_SYSTEM",
                     password=replication_password)
        assert ok.stdout.strip().count("|") == 3, ok.stdout
        wrong = cl.psql(_conninfo(host, port, replication_user, "replication", replication=True), "IDENTIFY_SYSTEM",
                        password=replication_password + "x", check=False)
        assert f'password authentication failed for user "{replication_user}"' in wrong.stderr, wrong.stderr
        for other, password in ((app_user, app_password), (superuser, superuser_password)):
            refused = cl.psql(_conninfo(host, port, other, "replication", replication=True), "IDENTIFY_SYSTEM",
                              password=password, check=False)
            assert (f'no pg_hba.conf entry for replication connection from host "{cl.app.ip}", user "{other}"'
                    in refused.stderr), refused.stderr


# ---- a replica crash --------------------------------------------------------------------------------


def test_replica_restart_does_not_reseed_and_catches_up(cl: Cluster) -> None:
    name = REPLICAS[0]
    inst = cl.replicas[name]
    slot = _slot_of(inst)
    pgdata = inst.host.path(inst.pgdata)
    inode = pgdata.stat().st_ino
    seeds = inst.log_text().count(f"{name}: seeding ")
    cl.psql(cl.database_url, "CREATE TABLE IF NOT EXISTS while_down (id int PRIMARY KEY)")
    wait_until(_answers(cl, cl.replica_url(name), "SELECT to_regclass('while_down') IS NOT NULL", "t"),
               timeout=CATCH_UP_TIMEOUT_S, what=f"while_down on {name}")

    inst.host.kill_all()
    wait_until(cl.primary.answers(f"SELECT active FROM pg_replication_slots WHERE slot_name = '{slot}'", "f"),
               timeout=30, what=f"{slot} inactive after {name} crashed")
    cl.psql(cl.database_url, f"INSERT INTO while_down SELECT generate_series(1, {ROWS_WHILE_DOWN})")
    held = cl.primary.sql(f"SELECT restart_lsn < pg_current_wal_lsn(), wal_status FROM pg_replication_slots "
                          f"WHERE slot_name = '{slot}'")
    assert held in ("t|reserved", "t|extended"), f"the slot must keep the WAL {name} still needs: {held}"

    start = time.monotonic()
    inst.start()
    url = cl.replica_url(name)
    wait_until(_answers(cl, url, "SELECT count(*) FROM while_down", str(ROWS_WHILE_DOWN)),
               timeout=CATCH_UP_TIMEOUT_S, what=f"{name} catching up")
    caught_up = time.monotonic() - start
    wait_until(inst.healthy, timeout=CATCH_UP_TIMEOUT_S, what=f"{name}'s health check after the restart")
    report(f"postgres {cl.version} ({TIER}): {name} killed (SIGKILL), {ROWS_WHILE_DOWN} rows committed meanwhile; "
           f"restarted through the same entrypoint it served all of them {caught_up:.2f} s after start "
           f"(0 rows lost), no re-seed")

    assert inst.log_text().count(f"{name}: seeding ") == seeds, "a restart must not seed again"
    assert pgdata.stat().st_ino == inode, "the data directory was replaced"
    role = _replication_role(cl)
    wait_until(lambda: _streaming(cl).get(name) == ("streaming", role, slot, inst.host.ip), timeout=30,
               what=f"{name} streaming through {slot} again")
    refused = cl.psql(url, "INSERT INTO while_down VALUES (0)", check=False)
    assert "read-only transaction" in refused.stderr, refused.stderr



@pytest.mark.parametrize("cut", ["after initdb, before the rename", "initdb done, no roles (another entrypoint)"])
def test_a_primary_whose_first_init_was_cut_short_comes_up_with_its_roles(
        tmp_path_factory: pytest.TempPathFactory, cut: str) -> None:
    """A first start that dies part-way, for real: the entrypoint's own initdb completes and the process is
    killed before the staging directory is renamed into place; or an official image's init ran initdb into
    PGDATA and died before its init script (PG_VERSION there, no application role). Either way the next start
    is healthy only with the application role, its database and the slots, because the health check logs in
    as the application."""
    require_netns()
    versions = server_versions()
    require_binary("setpriv")
    assert versions.postgres_bin
    rendering = rendered(TIER)
    workdir = traversable(tmp_path_factory.mktemp("pg-cut"))
    with Network(workdir, "pgcut") as net:
        primary = _instance(net.add(PRIMARY), container(rendering, PRIMARY), versions.postgres_bin)
        data = primary.host.path(primary.pgdata)
        initdb = str(Path(versions.postgres_bin) / "initdb")
        if cut.startswith("after initdb"):
            # A `mv` on PATH that kills the entrypoint when it is about to rename the finished initdb into
            # place, as a crash or an OOM kill at that moment would; every other mv is the real one.
            primary.host.write("/usr/local/bin/mv", '#!/bin/sh\n'
                               'case "$1" in *primary.partial) kill -9 $PPID; exit 1 ;; esac\n'
                               'exec /bin/mv "$@"\n', 0o755)
            primary.binds.append("/usr/local/bin")
            primary.start()
            proc = primary.host.procs[-1]
            assert proc.wait(timeout=BOOT_TIMEOUT_S) != 0, "the first start must have been cut short"
            assert (data.parent / "primary.partial" / "PG_VERSION").exists() and not (data / "PG_VERSION").exists()
            primary.host.path("/usr/local/bin/mv").unlink()
        else:
            data.mkdir(parents=True, exist_ok=True)
            shutil.chown(data, "postgres", "postgres")
            subprocess.run(["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--", initdb,
                            f"--pgdata={data}", "--username=postgres"], check=True, capture_output=True, timeout=120)
        primary.start()
        took = _wait_healthy([primary], BOOT_TIMEOUT_S)
        roles = primary.sql("SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles WHERE rolcanlogin "
                            "AND NOT rolsuper")
        slots = primary.sql("SELECT count(*) FROM pg_replication_slots")
        report(f"postgres {versions.postgres}: a first start cut short ({cut}) came up healthy {took[PRIMARY]:.2f} s "
               f"into the next start, with roles {roles} and {slots} slots")
        assert set(roles.split(",")) == {"banyan", "replicator"}
        assert int(slots) == 2
