"""The monitoring part on Debian's servers: Prometheus, Alertmanager, the PostgreSQL and Redis exporters and mtail
(Debian's packages) run the dev stack's rendered files and commands against the real PostgreSQL (a primary and a
replica), RabbitMQ, Redis and Nginx, each in its own network namespace named as its container; every scrape target
is up, and each headline alert fires when its condition is produced for real.

The one difference from what ships: the rules are rendered with compressed timing (mc.Timing: a 10 s rate window,
every `for:` divided by 60) and the stack scrapes and evaluates every few seconds
(banyan:monitoring.scrape_interval_s 2 and evaluation_interval_s 1), so an alert fires in seconds; thresholds,
expressions and labels are the shipped ones.
The gateways are stub HTTP servers (/slow answers after 300 ms, /fail with a 500), as in the Nginx suite.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from components.monitoring import config as mc
from components.redis.config import CONF_DIR as REDIS_CONF_DIR
from components.redis.config import DATA_DIR as REDIS_DATA_DIR
from components.redis.config import MONITOR_PASSWORD_ENV, MONITOR_USER
from model.spec import PlatformSpec
from testkit import Rendering, netns, render_stack, unwrap
from tests.helpers import env_of, spec_for, uploads
from tests.servers.conftest import (
    container,
    install_uploads,
    report,
    require_binary,
    require_netns,
    server_versions,
)
from tests.servers.test_nginx_servers import nginx_binds
from tests.servers.test_postgres_servers import Instance, _instance, _wait_healthy
from tests.servers.test_rabbitmq_servers import DATA_DIR as MQ_DATA
from tests.servers.test_rabbitmq_servers import LOG_DIR as MQ_LOG
from tests.servers.test_rabbitmq_servers import NODE_BINDS as MQ_BINDS
from tests.servers.test_rabbitmq_servers import _scripts_dir
from tests.servers.test_redis_servers import ENTRYPOINT_STANDIN, STANDIN_DIR

pytestmark = pytest.mark.servers

REPO = Path(__file__).resolve().parents[2]
FAST = mc.Timing(window_s=10, for_divisor=60)
# Only the files and command of the mtail container are used here (Debian's mtail runs them).
MTAIL_IMAGE = "banyan-local/mtail:bookworm"
CLIENT = "monitoring-client"
FIRE_TIMEOUT_S = 60.0
# Every 2 s: PostgreSQL's exporter takes about 1.6 s to answer that its server is down (pg_up 0), and a scrape may
# not outlast its interval.
SCRAPE_S = 2
SLOW_PATH, FAIL_PATH = "/slow", "/fail"

STUB = r'''
"""A gateway stand-in: 200 at once, /slow after 300 ms, /fail with a 500."""
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path.startswith("/slow"):
            time.sleep(0.3)
        status = 500 if self.path.startswith("/fail") else 200
        body = b"{}"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Server(ThreadingHTTPServer):
    daemon_threads = True


server = Server(("0.0.0.0", int(sys.argv[1])), Handler)
open("/srv/ready", "w").close()
server.serve_forever()
'''


def _sets() -> dict[str, Any]:
    """The dev stack, rendered for the servers here, with a replica and the monitoring part (and mtail) on."""
    return {**server_versions().stack_sets(), "tier": "small", "postgres.replicas": 1,
            "monitoring.enabled": True, "monitoring.mtail_image": MTAIL_IMAGE,
            "monitoring.scrape_interval_s": SCRAPE_S, "monitoring.evaluation_interval_s": 1}


def _rendering() -> Rendering:
    return render_stack("dev", set=_sets())


@cache
def _spec() -> PlatformSpec:
    return spec_for("dev", **_sets())


@dataclass
class Platform:
    net: netns.Network
    rendering: Rendering
    client: netns.Host
    app_env: dict[str, str]
    nginx_port: int
    primary: Instance
    started: dict[str, float] = field(default_factory=dict)

    def run(self, args: dict[str, Any], timeout: float = 120) -> dict[str, Any]:
        done = self.client.run([sys.executable, "-m", "tests.servers.monitoring_load", json.dumps(args)],
                               env={"PYTHONPATH": str(REPO)}, timeout=timeout)
        return dict(json.loads(done.stdout.strip().splitlines()[-1]))

    def spawn(self, args: dict[str, Any]) -> subprocess.Popen[bytes]:
        return self.client.spawn([sys.executable, "-m", "tests.servers.monitoring_load", json.dumps(args)],
                                 env={"PYTHONPATH": str(REPO)}, log=self.client.root / f"{args['mode']}.log")

    def api(self, path: str) -> Any:
        answer = self.run({"mode": "get", "url": f"http://{mc.PROMETHEUS_HOST}:{mc.PROMETHEUS_PORT}{path}"})
        return json.loads(answer["body"])["data"]

    def firing(self) -> dict[str, list[dict[str, str]]]:
        alerts: dict[str, list[dict[str, str]]] = {}
        for alert in self.api("/api/v1/alerts")["alerts"]:
            if alert["state"] == "firing":
                alerts.setdefault(alert["labels"]["alertname"], []).append(alert["labels"])
        return alerts

    def wait_firing(self, alert: str, since: float, what: str) -> dict[str, str]:
        """Poll Prometheus' alerts until `alert` fires; reports the seconds from `since` (the condition)."""
        found: list[dict[str, str]] = []

        def fired() -> bool:
            found[:] = self.firing().get(alert, [])
            return bool(found)

        netns.wait_until(fired, timeout=FIRE_TIMEOUT_S, what=f"{alert} to fire ({what})", interval=0.2)
        report(f"monitoring: {alert} fired {time.monotonic() - since:.1f} s after {what} "
               f"(scrape every {SCRAPE_S} s, evaluation every 1 s, for: {FAST.for_(_for_s(alert))})")
        return found[0]

    def query(self, expr: str) -> list[dict[str, Any]]:
        from urllib.parse import quote
        return list(self.api(f"/api/v1/query?query={quote(expr)}")["result"])


def _for_s(alert: str) -> int:
    return {a.name: a for a in mc.alerts(_spec())}[alert].for_s


def _argv(c: Any) -> list[str]:
    inputs = c.plain_inputs
    return [*(inputs.get("entrypoints") or []), *(inputs.get("command") or [])]


@contextlib.contextmanager
def _boot(workdir: Path) -> Iterator[Platform]:
    versions = server_versions()
    assert versions.postgres_bin
    binaries = {name: require_binary(name) for name in (
        "prometheus", "prometheus-alertmanager", "prometheus-postgres-exporter", "prometheus-redis-exporter", "mtail")}
    nginx_bin = require_binary("nginx", "/usr/sbin/nginx")
    mq_scripts = _scripts_dir()
    r = _rendering()
    spec = _spec()
    with netns.Network(workdir, "mon") as net:
        # ---- the platform's own parts ------------------------------------------------------------------
        pg = {name: _instance(net.add(name), container(r, name), versions.postgres_bin)
              for name in spec.postgres.instance_names}
        mq_name = spec.rabbitmq.instance_names[0]
        mq_c = container(r, mq_name)
        mq = net.add(mq_name)
        install_uploads(mq, mq_c)
        for d in (MQ_DATA, MQ_LOG):
            mq.path(d).mkdir(parents=True, exist_ok=True)
            shutil.chown(mq.path(d), "rabbitmq", "rabbitmq")
        rd_name = spec.redis.instance_names[0]
        rd_c = container(r, rd_name)
        rd = net.add(rd_name)
        install_uploads(rd, rd_c)
        rd.write(f"{STANDIN_DIR}/docker-entrypoint.sh", ENTRYPOINT_STANDIN, 0o755)
        gateways = {n: net.add(n) for n in spec.gateway.instance_names}
        ngx_c = container(r, spec.nginx.instance_names[0])
        ngx = net.add(spec.nginx.instance_names[0])
        install_uploads(ngx, ngx_c)
        # ---- the monitoring part ------------------------------------------------------------------------
        mon = {c.plain_inputs["hostname"]: c for c in r.of_type("docker:index/container:Container")
               if c.plain_inputs["hostname"] in {mc.PROMETHEUS_HOST, mc.ALERTMANAGER_HOST, mc.REDIS_EXPORTER_HOST,
                                                 mc.NGINX_METRICS_HOST,
                                                 *map(mc.postgres_exporter_host, spec.postgres.instance_names)}}
        hosts = {name: net.add(name) for name in sorted(mon)}
        for name, c in mon.items():
            install_uploads(hosts[name], c)
        client = net.add(CLIENT)
        service = next(c for c in r.of_type("docker:index/container:Container") if "RABBITMQ_PREFETCH" in env_of(c))
        app_env = {**env_of(container(r, spec.gateway.instance_names[0])), **env_of(service)}
        p = Platform(net=net, rendering=r, client=client, app_env=app_env,
                     nginx_port=int(unwrap(ngx_c.inputs)["ports"][0]["internal"]),
                     primary=pg[spec.postgres.primary_name])

        start = time.monotonic()
        primary = pg[spec.postgres.primary_name]
        primary.start()
        mq.spawn(_argv(mq_c), binds=list(MQ_BINDS), log=mq.root / "node.log",
                 env={**env_of(mq_c), "HOME": MQ_DATA,
                      "PATH": f"{mq_scripts}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"})
        rd.spawn(unwrap(rd_c.inputs)["entrypoints"], binds=[REDIS_CONF_DIR, REDIS_DATA_DIR, STANDIN_DIR],
                 env=env_of(rd_c), log=rd.root / "redis.log")
        port = int(env_of(container(r, spec.gateway.instance_names[0]))["PORT"])
        for host in gateways.values():
            host.write("/srv/stub.py", STUB)
            host.spawn([sys.executable, "/srv/stub.py", str(port)], binds=["/srv"])
        _wait_healthy([primary], 90)
        replicas = [pg[n] for n in spec.postgres.replica_names]
        for inst in replicas:
            inst.start()
        _wait_healthy(replicas, 90)

        def mq_healthy() -> bool:
            test = mq_c.plain_inputs["healthcheck"]["tests"][1]
            return mq.run(["sh", "-c", test], binds=list(MQ_BINDS), check=False, timeout=60,
                          env={**env_of(mq_c), "HOME": MQ_DATA,
                               "PATH": f"{mq_scripts}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
                          ).returncode == 0

        def rd_healthy() -> bool:
            test = rd_c.plain_inputs["healthcheck"]["tests"][1]
            return rd.run(["/bin/sh", "-c", test], env=env_of(rd_c), check=False, timeout=10).returncode == 0

        netns.wait_until(mq_healthy, timeout=180, what="RabbitMQ's health check", interval=1.0)
        netns.wait_until(rd_healthy, timeout=60, what="Redis' health check", interval=0.5)
        p.started["platform"] = time.monotonic() - start

        # mtail before Nginx (Nginx resolves its syslog host at start), then the exporters, Alertmanager, Prometheus:
        # the containers' own order.
        def spawn(name: str, binary: str, binds: list[str]) -> None:
            c = mon[name]
            # The container's command line, with Debian's binary in place of the image's entrypoint.
            hosts[name].spawn([binary, *(c.plain_inputs.get("command") or [])], binds=binds,
                              env=env_of(c), log=hosts[name].root / f"{name}.log")

        spawn(mc.NGINX_METRICS_HOST, binaries["mtail"], [mc.MTAIL_PROGS])
        ngx.spawn([nginx_bin, "-g", "daemon off;"], binds=list(nginx_binds(nginx_bin)), log=ngx.root / "nginx.log")
        for pg_name in spec.postgres.instance_names:
            spawn(mc.postgres_exporter_host(pg_name), binaries["prometheus-postgres-exporter"],
                  [str(Path(mc.PG_QUERIES_PATH).parent)])
        spawn(mc.REDIS_EXPORTER_HOST, binaries["prometheus-redis-exporter"], [])
        for name, data in ((mc.ALERTMANAGER_HOST, mc.ALERTMANAGER_DATA), (mc.PROMETHEUS_HOST, mc.PROMETHEUS_DATA)):
            path = hosts[name].path(data)
            path.mkdir(parents=True, exist_ok=True)
            shutil.chown(path, "prometheus", "prometheus")
        spawn(mc.ALERTMANAGER_HOST, binaries["prometheus-alertmanager"],
              [str(Path(mc.ALERTMANAGER_CONF).parent), mc.ALERTMANAGER_DATA])
        # The shipped rules file next to the compressed one: Prometheus must load both without error.
        prom = hosts[mc.PROMETHEUS_HOST]
        shipped = uploads(mon[mc.PROMETHEUS_HOST])[mc.RULES_PATH][0]
        assert shipped == mc.render_rules(spec), "the container ships the rules of the spec"
        prom.write(mc.RULES_PATH, mc.render_rules(spec, FAST))
        # cAdvisor reads the Docker engine's containers and their cgroups, which a network namespace hides (`ip netns
        # exec` remounts /sys): its job is left out here and proven on the engine (tests/e2e/docker/
        # test_cadvisor_engine.py); the rest of the file is the container's.
        conf = yaml.safe_load(uploads(mon[mc.PROMETHEUS_HOST])[mc.PROMETHEUS_CONF][0])
        jobs = [j for j in conf["scrape_configs"] if j["job_name"] != "cadvisor"]
        assert len(jobs) == len(conf["scrape_configs"]) - 1
        prom.write(mc.PROMETHEUS_CONF, yaml.safe_dump({**conf, "scrape_configs": jobs}, sort_keys=False))
        spawn(mc.PROMETHEUS_HOST, binaries["prometheus"],
              [str(Path(mc.PROMETHEUS_CONF).parent), str(Path(mc.RULES_PATH).parent), mc.PROMETHEUS_DATA])
        try:
            yield p
        except BaseException:
            for name, host in hosts.items():
                log = host.root / f"{name}.log"
                if log.exists():
                    print(f"--- {name}\n{log.read_text(errors='replace')[-2000:]}")
            raise


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    require_netns()
    workdir = netns.traversable(tmp_path_factory.mktemp("monitoring"))
    with _boot(workdir) as p:
        start = time.monotonic()

        def all_up() -> bool:
            try:
                targets = p.api("/api/v1/targets")["activeTargets"]
            except (AssertionError, ValueError, KeyError):
                return False
            return bool(targets) and all(t["health"] == "up" for t in targets)

        netns.wait_until(all_up, timeout=90, what="every scrape target up", interval=0.5)
        report(f"monitoring: platform up in {p.started['platform']:.1f} s; every scrape target up "
               f"{time.monotonic() - start:.1f} s after Prometheus started")
        yield p


def test_every_part_is_scraped_and_its_metrics_are_there(platform: Platform) -> None:
    targets = platform.api("/api/v1/targets")["activeTargets"]
    jobs = {(t["labels"]["job"], t["labels"]["instance"]) for t in targets}
    spec = _spec()
    expected = {("postgres", i) for i in spec.postgres.instance_names}
    expected |= {(job, n) for job in ("rabbitmq", "rabbitmq-queues") for n in spec.rabbitmq.instance_names}
    expected |= {("redis", n) for n in spec.redis.instance_names}
    expected |= {("nginx", spec.nginx.instance_names[0]), ("prometheus", mc.PROMETHEUS_HOST),
                 ("alertmanager", mc.ALERTMANAGER_HOST)}
    assert jobs == expected
    assert all(t["health"] == "up" for t in targets), [t for t in targets if t["health"] != "up"]
    # What each part's rules read is there, with the values the servers hold (the exporters connect at their first
    # scrape, and the recording rules follow an evaluation later).
    def recorded() -> bool:
        conn = platform.query("banyan:postgres_connections:ratio")
        return {s["metric"]["instance"] for s in conn} == set(spec.postgres.instance_names)

    netns.wait_until(recorded, timeout=30, what="the connection ratio of every PostgreSQL instance", interval=0.5)
    settings = platform.query('cnpg_pg_settings_setting{name="max_connections"}')
    assert {float(s["value"][1]) for s in settings} == {float(spec.postgres.max_connections)}
    recovery = {s["metric"]["instance"]: s["value"][1] for s in platform.query("cnpg_pg_replication_in_recovery")}
    assert recovery == {spec.postgres.primary_name: "0", **dict.fromkeys(spec.postgres.replica_names, "1")}
    streaming = platform.query("cnpg_pg_replication_streaming_replicas")
    assert {s["metric"]["instance"]: s["value"][1] for s in streaming}[spec.postgres.primary_name] == str(
        spec.postgres.replicas)
    assert platform.query("cnpg_pg_replication_is_wal_receiver_up == 1"), "the replica's WAL receiver streams"
    for metric in ("redis_keyspace_hits_total", "redis_memory_used_bytes", "redis_evicted_keys_total",
                   "rabbitmq_global_messages_received_total", "rabbitmq_erlang_uptime_seconds",
                   "cnpg_pg_stat_database_xact_commit", "cnpg_pg_postmaster_start_time", "pg_up",
                   "redis_start_time_seconds"):
        assert platform.query(metric), f"{metric}: no series"
    assert not platform.firing(), f"alerts fire on an idle, healthy platform: {platform.firing()}"


def test_every_monitoring_container_passes_its_rendered_health_check(platform: Platform) -> None:
    """The health checks `pulumi up` waits on (wget of the container's own readiness URL), run in each host."""
    spec = _spec()
    hosts = {c.plain_inputs["hostname"]: c for c in platform.rendering.of_type("docker:index/container:Container")}
    for name in (mc.PROMETHEUS_HOST, mc.ALERTMANAGER_HOST, mc.REDIS_EXPORTER_HOST, mc.NGINX_METRICS_HOST,
                 *map(mc.postgres_exporter_host, spec.postgres.instance_names)):
        test = hosts[name].plain_inputs["healthcheck"]["tests"]
        assert test[0] == "CMD", test
        done = platform.net.hosts[name].run(test[1:], check=False, timeout=30)
        assert done.returncode == 0, f"{name}: {' '.join(test[1:])} exited {done.returncode}: {done.stderr}"


def test_the_redis_exporter_logs_in_as_its_own_user_which_reads_no_key_value_or_password(platform: Platform) -> None:
    """The exporter's rendered login is banyan-monitor (components/redis/config.py MONITOR_ACL), not the administrator:
    it scrapes every node (redis_up 1), the only command of its scrapes Redis refuses is SLOWLOG GET (the slow
    commands' arguments), and the user may read no key, value or setting (ACL DRYRUN, which logs nothing)."""
    spec, r = _spec(), platform.rendering
    name = spec.redis.instance_names[0]
    exporter, node = env_of(container(r, mc.REDIS_EXPORTER_HOST)), env_of(container(r, name))
    assert exporter["REDIS_USER"] == MONITOR_USER
    assert exporter["REDIS_PASSWORD"] == node[MONITOR_PASSWORD_ENV]
    assert exporter["REDIS_PASSWORD"] not in {node["REDIS_PASSWORD"], node["REDIS_APP_PASSWORD"]}

    def scraped() -> bool:
        return {s["metric"]["instance"] for s in platform.query("redis_up == 1")} == set(spec.redis.instance_names)

    netns.wait_until(scraped, timeout=30, what="redis_up 1 for every Redis node", interval=0.5)
    host = platform.net.hosts[name]

    def admin(*args: str) -> list[str]:
        """redis-cli as the administrator (the node's REDISCLI_AUTH)."""
        return host.run(["redis-cli", "-p", str(spec.redis.port), *args], env=node, timeout=10).stdout.splitlines()

    # ACL LOG, one field name and value a line (redis-cli without a terminal); an entry starts at `count`.
    flat = [line for line in admin("acl", "log") if line]
    entries: list[dict[str, str]] = []
    for key, value in zip(flat[::2], flat[1::2], strict=True):
        if key == "count":
            entries.append({})
        entries[-1][key] = value
    assert {e["object"] for e in entries if e["username"] == MONITOR_USER} == {"slowlog|get"}, entries
    for command in (["get", "k"], ["set", "k", "v"], ["scan", "0"], ["keys", "*"], ["select", "0"],
                    ["config", "get", "requirepass"], ["slowlog", "get", "1"], ["client", "list"], ["monitor"],
                    ["eval", "return 1", "0"], ["cluster", "nodes"]):
        (answer,) = admin("acl", "dryrun", MONITOR_USER, *command)
        assert "no permissions" in answer, (command, answer)
    for command in (["info", "all"], ["client", "setname", "redis_exporter"], ["latency", "latest"],
                    ["slowlog", "len"]):
        assert admin("acl", "dryrun", MONITOR_USER, *command) == ["OK"], command


def test_a_queue_with_150_messages_and_no_consumer_fires_the_queue_depth_alert(platform: Platform) -> None:
    url = platform.app_env["RABBITMQ_URLS"].split(",")[0]
    published = platform.run({"mode": "publish", "url": url, "queue": "monitoring-depth", "count": 150})
    assert published["ready"] == 150
    labels = platform.wait_firing("BanyanQueueDepthHigh", time.monotonic(), "150 messages on a queue no one consumes")
    assert labels["queue"] == "monitoring-depth"


def test_connections_held_past_80_percent_fire_the_database_alert(platform: Platform) -> None:
    spec = _spec()
    t = spec.monitoring.thresholds
    assert t is not None
    held = spec.postgres.max_connections * t.db_connections_percent // 100 + 5
    url = urlsplit(platform.app_env["DATABASE_URL"])
    platform.client.write("/srv/hold.sql", "SELECT pg_sleep(0.5);\n")
    pgbench = require_binary("pgbench", "/usr/lib/postgresql/*/bin/pgbench")
    bench = platform.client.spawn(
        ["env", f"PGPASSWORD={url.password}", pgbench, "-n", "-c", str(held), "-j", "4", "-T", "40",
         "-f", "/srv/hold.sql", "-h", url.hostname or "", "-p", str(url.port), "-U", url.username or "",
         url.path.lstrip("/")], binds=["/srv"], log=platform.client.root / "pgbench.log")
    try:
        def held_open() -> bool:
            got = platform.query(f'sum(cnpg_backends_total{{instance="{spec.postgres.primary_name}"}})')
            return bool(got) and float(got[0]["value"][1]) >= held

        netns.wait_until(held_open, timeout=30, what=f"{held} connections open", interval=0.2)
        since = time.monotonic()
        labels = platform.wait_firing("BanyanDatabaseConnectionsHigh", since,
                                      f"{held} of max_connections {spec.postgres.max_connections} held open")
        assert labels["instance"] == spec.postgres.primary_name
        platform.wait_firing("BanyanConnectionBudgetExceeded", since,
                             f"{held} application connections, over the budget's {spec.budget.total}")
    finally:
        bench.terminate()
        bench.wait(timeout=30)


def test_a_run_of_misses_fires_the_cache_alert(platform: Platform) -> None:
    since = time.monotonic()
    load = platform.spawn({"mode": "misses", "url": platform.app_env["REDIS_URL"], "rate": 50, "seconds": 40})
    try:
        platform.wait_firing("BanyanCacheHitRateLow", since, "misses at 50 lookups/s")
    finally:
        load.terminate()
        load.wait(timeout=30)


@pytest.mark.parametrize(("alert", "path", "what"), [
    ("BanyanRequestLatencyHigh", SLOW_PATH, "every request taking 300 ms"),
    ("BanyanErrorRateHigh", FAIL_PATH, "every request failing with a 500"),
])
def test_slow_or_failing_upstream_responses_fire_the_latency_and_error_alerts(platform: Platform, alert: str,
                                                                            path: str, what: str) -> None:
    since = time.monotonic()
    load = platform.spawn({"mode": "http_load", "host": "nginx", "port": platform.nginx_port, "path": path,
                           "concurrency": 4, "seconds": 40})
    try:
        platform.wait_firing(alert, since, what)
    finally:
        load.terminate()
        load.wait(timeout=30)


def test_a_rabbitmq_node_that_dies_fires_the_node_down_and_target_down_alerts(platform: Platform) -> None:
    """Second to last: it takes the (only) RabbitMQ node down for good; nothing after it needs the bus."""
    node = _spec().rabbitmq.instance_names[0]
    since = time.monotonic()
    platform.net.hosts[node].kill_all()
    platform.wait_firing("BanyanRabbitMQNodeDown", since, "the only RabbitMQ node killed")
    down = platform.wait_firing("BanyanTargetDown", since, "the only RabbitMQ node killed")
    assert down["instance"] == node and down["job"].startswith("rabbitmq"), down


def test_a_replica_that_stops_fires_the_replication_alert(platform: Platform) -> None:
    """Last: it takes the replica down for good."""
    spec = _spec()
    replica = platform.net.hosts[spec.postgres.replica_names[0]]
    since = time.monotonic()
    replica.kill_all()
    labels = platform.wait_firing("BanyanReplicaNotStreaming", since, "the replica's server killed")
    # The primary sees fewer streaming replicas than the stack has (the replica's own exporter reaches no server).
    assert labels["instance"] == spec.postgres.primary_name
    platform.wait_firing("BanyanPostgresDown", since, "the replica's server killed")
