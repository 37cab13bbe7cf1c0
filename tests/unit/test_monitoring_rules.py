"""The alert rules as Prometheus reads them: `promtool check rules` on the rendered file and `promtool test rules`
with a case per alert: it fires above its threshold, stays silent at or below it, and waits its `for:`.

The series are built from the resolved spec's own numbers (thresholds, max_connections, the budget, node counts),
so a changed threshold moves the cases with it, and every alert a rendering holds must have a case here."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.monitoring import config as mc
from components.monitoring import kubernetes as mon_k8s
from components.redis import kubernetes as redis_k8s
from model.preflight_kubernetes import MTAIL_CONTAINER, REDIS_EXPORTER_CONTAINER
from model.spec import PlatformSpec
from model.thresholds import ACTIONS
from tests.helpers import promtool as _promtool
from tests.helpers import spec_for

MTAIL = "banyan-local/mtail:bookworm-3.0.0"
# Minutes past `for:` by which a rate-based alert has surely fired: a rate over the 5-minute window of a series that
# starts inside it is extrapolated over the whole window (it ramps up for 5 minutes), and an alert that reads a
# recording rule sees its first value an evaluation later.
RATE_DELAY = 6
STACKS: dict[str, tuple[str, dict[str, Any]]] = {
    # The dev stack with a replica (replication alerts) and Nginx metrics (latency and error rate).
    "docker-small": ("dev", {"monitoring.enabled": True, "monitoring.mtail_image": MTAIL, "postgres.replicas": 1}),
    # A RabbitMQ cluster (partition) and a Redis Cluster (cluster state).
    "docker-large": ("dev", {"monitoring.enabled": True, "monitoring.mtail_image": MTAIL, "tier": "large"}),
    # The prod stack (large), with the sidecars: the Redis exporter and mtail (latency and error rate).
    "kubernetes-large": ("prod", {"monitoring.enabled": True, "monitoring.mtail_image": MTAIL}),
}


def _spec(name: str) -> PlatformSpec:
    stack, sets = STACKS[name]
    return spec_for(stack, **sets)


@dataclass
class Case:
    """One alert under one scenario: `series` (promtool notation, 1-minute steps), and where it must be firing
    with which labels (`fires`), and where it must not be (`silent`: minutes)."""

    alert: str
    what: str
    series: dict[str, str]
    fires: dict[int, list[dict[str, str]]] = field(default_factory=dict)
    silent: tuple[int, ...] = ()


def _s(metric: str, **labels: str) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{metric}{{{inner}}}"


def _cases(spec: PlatformSpec) -> list[Case]:
    t = spec.monitoring.thresholds
    assert t is not None
    k8s = spec.target == "kubernetes"
    ns = {"namespace": spec.kubernetes.namespace} if k8s else {}
    pg_job = {"job": f"{spec.kubernetes.namespace}/{spec.postgres.name}"} if k8s else {"job": "postgres"}
    mq_job = {"job": f"{spec.kubernetes.namespace}/{spec.rabbitmq.name}"} if k8s else {"job": "rabbitmq"}

    def sidecar(monitor: str, pod: str, container: str) -> dict[str, str]:
        """A sidecar's series as its PodMonitor labels them: the Prometheus Operator's job (`<namespace>/<name>`),
        namespace, pod, container and endpoint, and the instance the monitor's relabeling takes from the pod."""
        namespace = spec.kubernetes.namespace
        return {"instance": pod, "job": f"{namespace}/{monitor}", "namespace": namespace, "pod": pod,
                "container": container, "endpoint": mon_k8s.METRICS_PORT_NAME}
    primary, replica = spec.postgres.primary_name, (spec.postgres.replica_names or ("none",))[0]
    by = {a.name: a for a in mc.alerts(spec)}
    cases: list[Case] = []

    def add(case: Case) -> None:
        if case.alert in by:
            cases.append(case)

    def for_min(alert: str) -> int:
        return by[alert].for_s // 60 if alert in by else 0

    # ---- the guide's thresholds -----------------------------------------------------------------------------
    queue = {"vhost": "/", "queue": "orders", "instance": spec.rabbitmq.instance_names[0],
             "job": "rabbitmq-queues", **ns}
    wait = for_min("BanyanQueueDepthHigh")
    add(Case("BanyanQueueDepthHigh", "above the depth, for its for:",
             {_s("rabbitmq_detailed_queue_messages_ready", **queue): f"{t.queue_depth + 50}x40"},
             fires={wait + 1: [{"vhost": "/", "queue": "orders", "severity": "warning"}]}, silent=(wait - 1,)))
    add(Case("BanyanQueueDepthHigh", "at the depth", {_s("rabbitmq_detailed_queue_messages_ready", **queue):
                                                      f"{t.queue_depth}x40"}, silent=(wait + 5,)))

    pg = {"instance": primary, **pg_job, **ns}
    max_conn = spec.postgres.max_connections
    over = max_conn * t.db_connections_percent // 100 + 5
    at = max_conn * t.db_connections_percent // 100
    settings = {_s("cnpg_pg_settings_setting", name="max_connections", **pg): f"{max_conn}x40"}
    wait = for_min("BanyanDatabaseConnectionsHigh")
    add(Case("BanyanDatabaseConnectionsHigh", "above the share of max_connections",
             {_s("cnpg_backends_total", datname="app", usename="other", state="idle", **pg): f"{over}x40",
              **settings},
             fires={wait + 1: [{"instance": primary, "severity": "warning"}]}, silent=(wait - 1,)))
    add(Case("BanyanDatabaseConnectionsHigh", "at the share",
             {_s("cnpg_backends_total", datname="app", usename="other", state="idle", **pg): f"{at}x40",
              **settings}, silent=(wait + 5,)))

    rd = (sidecar(spec.redis.name, redis_k8s.pod_names(spec.redis)[0], REDIS_EXPORTER_CONTAINER) if k8s
          else {"instance": spec.redis.instance_names[0], "job": "redis"})
    wait = for_min("BanyanCacheHitRateLow")
    add(Case("BanyanCacheHitRateLow", "83 % of 6 lookups/s hit",
             {_s("redis_keyspace_hits_total", **rd): "0+300x40", _s("redis_keyspace_misses_total", **rd): "0+60x40"},
             fires={wait + RATE_DELAY: [{"severity": "warning"}]}, silent=(wait - 1,)))
    hits = t.cache_hit_percent * 60
    add(Case("BanyanCacheHitRateLow", "exactly at the hit rate",
             {_s("redis_keyspace_hits_total", **rd): f"0+{hits}x40",
              _s("redis_keyspace_misses_total", **rd): f"0+{6000 - hits}x40"}, silent=(wait + 5,)))
    add(Case("BanyanCacheHitRateLow", "all misses, below the traffic that says anything",
             {_s("redis_keyspace_hits_total", **rd): "0+0x40", _s("redis_keyspace_misses_total", **rd): "0+30x40"},
             silent=(wait + 5,)))
    if k8s:
        # The cluster's Prometheus scrapes other namespaces too: their Redis is not this stack's.
        elsewhere = {**rd, "namespace": "other", "job": "other/redis"}
        add(Case("BanyanCacheHitRateLow", "another namespace's Redis misses",
                 {_s("redis_keyspace_hits_total", **rd): "0+600x40", _s("redis_keyspace_misses_total", **rd): "0+0x40",
                  _s("redis_keyspace_hits_total", **elsewhere): "0+0x40",
                  _s("redis_keyspace_misses_total", **elsewhere): "0+6000x40"}, silent=(wait + 5,)))

    # On Kubernetes the series of two Nginx pods (a Deployment's pod names), summed by the recording rules: each pod
    # counts its share of the requests per minute given.
    ngx_pods = ([sidecar(spec.nginx.name, f"{spec.nginx.name}-6c9f7b8d4-{x}", MTAIL_CONTAINER)
                 for x in ("k2x7p", "q9w4z")] if k8s else [{"instance": spec.nginx.instance_names[0], "job": "nginx"}])

    def per_pod(metric: str, per_minute: int, pods: list[dict[str, str]] = ngx_pods, **labels: str) -> dict[str, str]:
        assert per_minute % len(pods) == 0
        return {_s(metric, **labels, **pod): f"0+{per_minute // len(pods)}x40" for pod in pods}

    def status(per_minute: int, status_class: str, pods: list[dict[str, str]] = ngx_pods) -> dict[str, str]:
        return per_pod("nginx_http_requests_total", per_minute, pods, status_class=status_class, method="GET")

    requests = status(120, "2xx")

    def buckets(counts: dict[str, int]) -> dict[str, str]:
        return {k: v for le, n in counts.items() for k, v in per_pod("nginx_http_request_duration_seconds_bucket", n,
                                                                      le=le).items()}

    wait = for_min("BanyanRequestLatencyHigh")
    add(Case("BanyanRequestLatencyHigh", "p95 near 300 ms",
             {**requests, **buckets({"0.1": 0, "0.2": 0, "0.25": 12, "0.3": 120, "+Inf": 120})},
             fires={wait + RATE_DELAY: [{"severity": "warning"}]}, silent=(wait - 1,)))
    add(Case("BanyanRequestLatencyHigh", "p95 at 100 ms",
             {**requests, **buckets({"0.1": 114, "0.2": 120, "0.25": 120, "0.3": 120, "+Inf": 120})},
             silent=(wait + 5,)))

    wait = for_min("BanyanErrorRateHigh")
    add(Case("BanyanErrorRateHigh", "5 % of requests fail",
             {**status(1140, "2xx"), **status(60, "5xx")},
             fires={wait + RATE_DELAY: [{"severity": "critical"}]}, silent=(wait - 1,)))
    fail = int(t.error_rate_percent * 12)
    add(Case("BanyanErrorRateHigh", "exactly at the error rate",
             {**status(1200 - fail, "2xx"), **status(fail, "5xx")}, silent=(wait + 5,)))
    if k8s:
        other_nginx = [{**pod, "namespace": "other", "job": "other/nginx"} for pod in ngx_pods]
        add(Case("BanyanErrorRateHigh", "another namespace's Nginx fails",
                 {**status(1200, "2xx"), **status(1200, "5xx", other_nginx)}, silent=(wait + 5,)))

    if k8s:
        cpu = {"namespace": spec.kubernetes.namespace, "pod": "api-gateway-1", "container": "api-gateway"}
        other = {**cpu, "namespace": "other"}
        wait = for_min("BanyanContainerCPUHigh")
        add(Case("BanyanContainerCPUHigh", "75 % of one core",
                 {_s("container_cpu_usage_seconds_total", **cpu): "0+45x40",
                  _s("kube_pod_container_resource_limits", resource="cpu", **cpu): "1x40"},
                 fires={wait + RATE_DELAY: [{**cpu, "severity": "warning"}]}, silent=(wait - 1,)))
        add(Case("BanyanContainerCPUHigh", "67 % here; another namespace's at 100 %",
                 {_s("container_cpu_usage_seconds_total", **cpu): "0+40x40",
                  _s("kube_pod_container_resource_limits", resource="cpu", **cpu): "1x40",
                  _s("container_cpu_usage_seconds_total", **other): "0+60x40",
                  _s("kube_pod_container_resource_limits", resource="cpu", **other): "1x40"},
                 silent=(wait + 5,)))
        wait = for_min("BanyanContainerMemoryHigh")
        add(Case("BanyanContainerMemoryHigh", "95 % of the limit",
                 {_s("container_memory_working_set_bytes", **cpu): "1020054733x40",
                  _s("kube_pod_container_resource_limits", resource="memory", **cpu): "1073741824x40"},
                 fires={wait + 1: [{**cpu, "severity": "warning"}]}, silent=(wait - 1,)))
        add(Case("BanyanContainerMemoryHigh", "75 % of the limit",
                 {_s("container_memory_working_set_bytes", **cpu): "805306368x40",
                  _s("kube_pod_container_resource_limits", resource="memory", **cpu): "1073741824x40"},
                 silent=(wait + 5,)))

    else:
        # cAdvisor's series as the `cadvisor` job keeps them: the container's name, instance (`container`) and part.
        gw = {"job": "cadvisor", "instance": "cadvisor", "name": f"{spec.project}-{spec.stack}-api-gateway-1",
              "container": "api-gateway-1", "part": "api-gateway"}
        nolimit = {**gw, "name": f"{spec.project}-{spec.stack}-api-gateway-2", "container": "api-gateway-2"}
        half_core = {_s("container_spec_cpu_quota", **gw): "50000x40",
                     _s("container_spec_cpu_period", **gw): "100000x40"}
        wait = for_min("BanyanContainerCPUHigh")
        add(Case("BanyanContainerCPUHigh", "80 % of its 0.5 CPU (quota/period)",
                 {_s("container_cpu_usage_seconds_total", cpu="total", **gw): "0+24x40", **half_core},
                 fires={wait + RATE_DELAY: [{"name": gw["name"], "container": gw["container"], "severity": "warning"}]},
                 silent=(wait - 1,)))
        add(Case("BanyanContainerCPUHigh", "60 % of its 0.5 CPU; a container without a quota at a full core",
                 {_s("container_cpu_usage_seconds_total", cpu="total", **gw): "0+18x40", **half_core,
                  _s("container_cpu_usage_seconds_total", cpu="total", **nolimit): "0+60x40",
                  _s("container_spec_cpu_period", **nolimit): "100000x40"},
                 silent=(wait + 5, wait + RATE_DELAY + 5)))
        wait = for_min("BanyanContainerMemoryHigh")
        add(Case("BanyanContainerMemoryHigh", "95 % of its memory limit",
                 {_s("container_memory_working_set_bytes", **gw): "255013683x40",
                  _s("container_spec_memory_limit_bytes", **gw): "268435456x40"},
                 fires={wait + 1: [{"name": gw["name"], "container": gw["container"], "severity": "warning"}]},
                 silent=(wait - 1,)))
        add(Case("BanyanContainerMemoryHigh", "75 % of its limit; a container without a limit (0) at 1 GiB",
                 {_s("container_memory_working_set_bytes", **gw): "201326592x40",
                  _s("container_spec_memory_limit_bytes", **gw): "268435456x40",
                  _s("container_memory_working_set_bytes", **nolimit): "1073741824x40",
                  _s("container_spec_memory_limit_bytes", **nolimit): "0x40"},
                 silent=(wait + 5,)))

    # ---- the platform's own -------------------------------------------------------------------------------
    rp = {"instance": replica, **pg_job, **ns}
    streaming = {_s("cnpg_pg_replication_in_recovery", **pg): "0x40",
                 _s("cnpg_pg_replication_streaming_replicas", **pg): f"{spec.postgres.replicas}x40"}
    wait = for_min("BanyanReplicaNotStreaming")
    add(Case("BanyanReplicaNotStreaming", "a replica whose WAL receiver is down",
             {**streaming, _s("cnpg_pg_replication_in_recovery", **rp): "1x40",
              _s("cnpg_pg_replication_is_wal_receiver_up", **rp): "0x40"},
             fires={wait + 1: [{**rp, "severity": "critical"}]}, silent=(wait - 1,)))
    add(Case("BanyanReplicaNotStreaming", "the primary streams to fewer replicas",
             {_s("cnpg_pg_replication_in_recovery", **pg): "0x40",
              _s("cnpg_pg_replication_streaming_replicas", **pg): f"{spec.postgres.replicas - 1}x40"},
             fires={wait + 1: [{**pg, "severity": "critical"}]}))
    add(Case("BanyanReplicaNotStreaming", "every replica streams",
             {**streaming, _s("cnpg_pg_replication_in_recovery", **rp): "1x40",
              _s("cnpg_pg_replication_is_wal_receiver_up", **rp): "1x40"}, silent=(wait + 5,)))
    wait = for_min("BanyanReplicaLagging")
    add(Case("BanyanReplicaLagging", "behind by more than the lag",
             {_s("cnpg_pg_replication_lag", **rp): f"{mc.REPLICA_LAG_S + 15}x40"},
             fires={wait + 1: [{**rp, "severity": "warning"}]}, silent=(wait - 1,)))
    add(Case("BanyanReplicaLagging", "at the lag", {_s("cnpg_pg_replication_lag", **rp): f"{mc.REPLICA_LAG_S}x40"},
             silent=(wait + 5,)))

    nodes = spec.rabbitmq.nodes
    pods = ([f"{spec.rabbitmq.name}-server-{i}" for i in range(nodes)] if k8s
            else list(spec.rabbitmq.instance_names))
    wait = for_min("BanyanRabbitMQNodeDown")
    up = {_s("up", instance=p, **mq_job, **ns): "1x40" for p in pods}
    one_down = {**up, _s("up", instance=pods[-1], **mq_job, **ns): "0x40"}
    add(Case("BanyanRabbitMQNodeDown", "one node does not answer", one_down,
             fires={wait + 1: [{"severity": "critical"}]}, silent=(wait - 1,)))
    add(Case("BanyanRabbitMQNodeDown", "every node answers", up, silent=(wait + 5,)))
    links = [_s("erlang_vm_dist_node_state", instance=p, peer=f"rabbit@{q}", **mq_job, **ns)
             for p in pods for q in pods if p != q]
    wait = for_min("BanyanRabbitMQPartition")
    add(Case("BanyanRabbitMQPartition", "every node answers, one node's links are down",
             {**up, **{s: ("1x40" if pods[0] in s else "3x40") for s in links}},
             fires={wait + 1: [{"severity": "critical"}]}, silent=(wait - 1,)))
    add(Case("BanyanRabbitMQPartition", "a full mesh", {**up, **dict.fromkeys(links, "3x40")}, silent=(wait + 5,)))

    wait = for_min("BanyanRedisClusterStateNotOk")
    add(Case("BanyanRedisClusterStateNotOk", "cluster_state:fail", {_s("redis_cluster_state", **rd): "0x40"},
             fires={wait + 1: [{**rd, "severity": "critical"}]}, silent=(wait - 1,)))
    add(Case("BanyanRedisClusterStateNotOk", "cluster_state:ok", {_s("redis_cluster_state", **rd): "1x40"},
             silent=(wait + 5,)))

    if k8s:
        restart = {"namespace": spec.kubernetes.namespace, "pod": f"{spec.redis.name}-0", "container": "redis"}
        add(Case("BanyanInstanceRestarting", "two restarts in 15 minutes",
                 {_s("kube_pod_container_status_restarts_total", **restart): "0 0 0 1 1 2 2 2 2 2 2 2"},
                 fires={6: [{**restart, "severity": "warning"}]}))
        add(Case("BanyanInstanceRestarting", "one restart",
                 {_s("kube_pod_container_status_restarts_total", **restart): "0 0 0 1 1 1 1 1 1 1"}, silent=(6,)))
    else:
        add(Case("BanyanInstanceRestarting", "PostgreSQL started three times in 15 minutes",
                 {_s("cnpg_pg_postmaster_start_time", **pg): "100 100 200 200 300 300 300 300"},
                 fires={5: [{**pg, "severity": "warning"}]}))
        add(Case("BanyanInstanceRestarting", "Redis restarted twice",
                 {_s("redis_start_time_seconds", **rd): "100 100 200 300 300 300"},
                 fires={4: [{**rd, "severity": "warning"}]}))
        add(Case("BanyanInstanceRestarting", "one restart of PostgreSQL",
                 {_s("cnpg_pg_postmaster_start_time", **pg): "100 100 200 200 200 200"}, silent=(5,)))
    wait = for_min("BanyanTargetDown")
    target = rd
    add(Case("BanyanTargetDown", "a target down", {_s("up", **target): "0x40"},
             fires={wait + 1: [{**target, "severity": "warning"}]}, silent=(wait - 1,)))
    add(Case("BanyanTargetDown", "a target up", {_s("up", **target): "1x40"}, silent=(wait + 5,)))
    wait = for_min("BanyanPostgresDown")
    down_metric = "cnpg_collector_up" if k8s else "pg_up"
    add(Case("BanyanPostgresDown", "the exporter cannot query", {_s(down_metric, **pg): "0x40"},
             fires={wait + 1: [{**pg, "severity": "critical"}]}, silent=(wait - 1,)))
    add(Case("BanyanPostgresDown", "the exporter queries", {_s(down_metric, **pg): "1x40"}, silent=(wait + 5,)))
    wait = for_min("BanyanConnectionBudgetExceeded")
    app = {"datname": spec.postgres.database, "usename": spec.postgres.user, "state": "idle", **pg}
    add(Case("BanyanConnectionBudgetExceeded", "one connection more than the budget",
             {_s("cnpg_backends_total", **app): f"{spec.budget.total + 1}x40",
              _s("cnpg_backends_total", **{**app, "usename": "someone"}): "0x40"},
             fires={wait + 1: [{"instance": primary, "severity": "warning"}]}, silent=(wait - 1,)))
    add(Case("BanyanConnectionBudgetExceeded", "the budget exactly, and others' connections beside it",
             {_s("cnpg_backends_total", **app): f"{spec.budget.total}x40",
              _s("cnpg_backends_total", **{**app, "usename": "someone"}): "20x40"}, silent=(wait + 5,)))
    return cases


def _test_file(rules: Path, cases: list[Case]) -> dict[str, Any]:
    tests = []
    for case in cases:
        checks: list[dict[str, Any]] = []
        for minute, labels in case.fires.items():
            checks.append({"eval_time": f"{minute}m", "alertname": case.alert,
                           "exp_alerts": [{"exp_labels": lab} for lab in labels]})
        for minute in case.silent:
            checks.append({"eval_time": f"{max(0, minute)}m", "alertname": case.alert, "exp_alerts": []})
        tests.append({"name": f"{case.alert}: {case.what}", "interval": "1m",
                      "input_series": [{"series": s, "values": v} for s, v in case.series.items()],
                      "alert_rule_test": checks})
    return {"rule_files": [str(rules)], "evaluation_interval": "1m", "tests": tests}


@pytest.mark.parametrize("stack", sorted(STACKS))
def test_every_alert_fires_above_its_threshold_waits_its_for_and_stays_silent_at_it(stack: str,
                                                                                   tmp_path: Path) -> None:
    promtool = _promtool()
    spec = _spec(stack)
    rules = tmp_path / "banyan.rules.yml"
    rules.write_text(mc.render_rules(spec))
    checked = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    cases = _cases(spec)
    rendered = {a.name for a in mc.alerts(spec)}
    covered = {c.alert for c in cases}
    assert rendered == covered, f"alerts without a case: {sorted(rendered - covered)}"
    # Every alert is proven both ways: firing somewhere, silent somewhere.
    for name in rendered:
        assert any(c.fires for c in cases if c.alert == name), f"{name}: no case where it fires"
        assert any(c.silent for c in cases if c.alert == name), f"{name}: no case where it stays silent"
    # promtool compares annotations as rendered, which hold the very values the series make: the firing test
    # runs the rendered file without them (expressions, for:, labels untouched; `check rules` above parsed
    # their templates, and the test below reads their wording).
    doc = yaml.safe_load(rules.read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    bare = tmp_path / "banyan.rules.bare.yml"
    bare.write_text(yaml.safe_dump(doc, sort_keys=False))
    test = tmp_path / "banyan.rules.test.yml"
    test.write_text(yaml.safe_dump(_test_file(bare, cases), sort_keys=False))
    done = subprocess.run([promtool, "test", "rules", str(test)], capture_output=True, text=True, check=False,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_guide_thresholds_are_the_rules_and_the_database_one_is_the_budget_limit() -> None:
    spec = _spec("docker-small")
    t = spec.monitoring.thresholds
    assert t is not None
    assert (t.latency_p95_ms, t.queue_depth, t.cache_hit_percent, t.error_rate_percent, t.cpu_percent) == (
        200, 100, 90, 1.0, 70)
    assert t.db_connections_percent == spec.budget.limit_percent
    by = {a.name: a for a in mc.alerts(spec)}
    assert f"> {t.queue_depth}" in by["BanyanQueueDepthHigh"].expr
    assert f"> {t.db_connections_percent}" in by["BanyanDatabaseConnectionsHigh"].expr
    assert f"> {spec.budget.total}" in by["BanyanConnectionBudgetExceeded"].expr
    # Each guide threshold quotes its scaling action, as the guide words it.
    guided = {a.name: a.action for a in by.values() if a.guide}
    assert guided == {
        "BanyanRequestLatencyHigh": ACTIONS["latency"], "BanyanQueueDepthHigh": ACTIONS["queue_depth"],
        "BanyanDatabaseConnectionsHigh": ACTIONS["db_connections"], "BanyanCacheHitRateLow": ACTIONS["cache_hit"],
        "BanyanErrorRateHigh": ACTIONS["error_rate"], "BanyanContainerCPUHigh": ACTIONS["cpu"],
    }
    assert f"* 100 > {t.cpu_percent}" in by["BanyanContainerCPUHigh"].expr
    k8s = {a.name: a.action for a in mc.alerts(_spec("kubernetes-large")) if a.guide}
    assert k8s["BanyanContainerCPUHigh"] == ACTIONS["cpu"]
    for rule in mc.rule_groups(spec)[1]["rules"]:
        assert {"summary", "description", "action"} <= set(rule["annotations"]), rule["alert"]


def test_compressed_timing_shortens_only_windows_and_for() -> None:
    spec = _spec("docker-small")
    fast = mc.Timing(window_s=10, for_divisor=60)
    shipped, quick = mc.rule_groups(spec), mc.rule_groups(spec, fast)
    for a, b in zip(shipped[1]["rules"], quick[1]["rules"], strict=True):
        assert a["alert"] == b["alert"] and a["labels"] == b["labels"]
        assert a["expr"].replace("[5m]", "[10s]") == b["expr"]
    assert {r["for"] for r in quick[1]["rules"]} <= {"0s", "1s", "2s", "5s", "10s"}


def test_the_readme_explains_every_alert_with_the_guides_action() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("## Monitoring and alerts"):]
    section = section[:section.index("\n## ", 1)]
    rows = {line.split("|")[1].strip().strip("`"): line for line in section.splitlines()
            if line.startswith("| `Banyan") and line.count("|") == 6}  # the alerts table, not the timings
    names = {a.name: a for stack in STACKS for a in mc.alerts(_spec(stack))}
    assert set(names) <= set(rows), f"alerts the README does not explain: {sorted(set(names) - set(rows))}"
    for name, alert in names.items():
        if alert.guide:
            assert f"| {alert.action} |" in rows[name], f"{name}: the README's action is not the guide's"
        assert f"| {mc.SHIPPED.for_(alert.for_s)} |" in rows[name], f"{name}: the README's for: differs"


@pytest.mark.parametrize("webhook", [None, "https://alert-relay.example.com/banyan"])
def test_prometheus_and_alertmanager_accept_the_rendered_configuration(webhook: str | None, tmp_path: Path) -> None:
    promtool = _promtool()
    amtool = shutil.which("amtool")
    if amtool is None:
        if os.environ.get("BANYAN_REQUIRE_SERVERS") == "1":
            pytest.fail("BANYAN_REQUIRE_SERVERS=1 but amtool is not installed (Debian package prometheus-alertmanager)")
        pytest.skip("amtool is not installed (Debian package prometheus-alertmanager)")
    stack, sets = STACKS["docker-large"]
    spec = spec_for(stack, **sets, **({"monitoring.alertmanager_webhook_url": webhook} if webhook else {}))
    rules = tmp_path / "banyan.rules.yml"
    rules.write_text(mc.render_rules(spec))
    conf = tmp_path / "prometheus.yml"
    conf.write_text(mc.render_prometheus_yml(spec, rules_path=str(rules)))
    checked = subprocess.run([promtool, "check", "config", str(conf)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    am = tmp_path / "alertmanager.yml"
    am.write_text(mc.render_alertmanager_yml(spec))
    checked = subprocess.run([amtool, "check-config", str(am)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert ("webhook_configs" in am.read_text()) is (webhook is not None)
