"""The monitoring part's files, pure functions of the resolved spec: the alert rules (one renderer for Docker's rule
file and Kubernetes' PrometheusRule), Prometheus' and Alertmanager's configuration, the PostgreSQL exporter's
queries and the mtail program that turns Nginx's access log into metrics.

Every threshold comes from the spec (`spec.monitoring.thresholds`, model/thresholds.py: the guide's numbers, and
the connection budget's own limit); `Timing` only compresses windows and `for:` durations, so that the real-server
suite can see an alert fire in seconds with the very rules that ship."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from components.postgres import alerts as postgres_alerts
from components.postgres import backup as postgres_backup
from model.spec import AlertThresholds, PlatformSpec
from model.thresholds import (
    ACTIONS,
    ALERTMANAGER_HOST,
    CADVISOR_HOST,
    NGINX_METRICS_HOST,
    PROMETHEUS_HOST,
    REDIS_EXPORTER_HOST,
    nginx_metrics,
    postgres_exporter_host,
    redis_metrics,
)

__all__ = ["ALERTMANAGER_HOST", "CADVISOR_HOST", "NGINX_METRICS_HOST", "PROMETHEUS_HOST", "REDIS_EXPORTER_HOST",
           "postgres_exporter_host"]

# Ports: the exporters' own defaults, RabbitMQ's Prometheus plugin, mtail's HTTP port.
POSTGRES_EXPORTER_PORT = 9187
REDIS_EXPORTER_PORT = 9121
RABBITMQ_PROMETHEUS_PORT = 15692
MTAIL_PORT = 3903
# Where Nginx sends its access log (syslog over UDP) to mtail.
MTAIL_SYSLOG_PORT = 5140
PROMETHEUS_PORT = 9090
ALERTMANAGER_PORT = 9093
# cAdvisor (Docker): its default port; the container labels its series keep (the stack's own, see docker_common).
CADVISOR_PORT = 8080
CADVISOR_LABELS = ("banyan.project", "banyan.stack", "banyan.part", "banyan.instance")


# Container paths.
PROMETHEUS_CONF = "/etc/prometheus/prometheus.yml"
RULES_PATH = "/etc/prometheus/rules/banyan.rules.yml"
PROMETHEUS_DATA = "/prometheus"
ALERTMANAGER_CONF = "/etc/alertmanager/alertmanager.yml"
ALERTMANAGER_DATA = "/alertmanager"
PG_QUERIES_PATH = "/etc/postgres-exporter/queries.yml"
MTAIL_PROGS = "/etc/mtail"
MTAIL_PROGRAM = f"{MTAIL_PROGS}/nginx.mtail"

# Latency buckets (seconds): fine around the guide's 200 ms, so p50/p95/p99 are read within a bucket's width.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)

# Beside the guide's thresholds, what a platform needs (not the guide's numbers; named here, documented in README).
REPLICA_LAG_S = 30
# Lookups per second below which a hit rate says nothing (a handful of cold misses after a restart).
CACHE_MIN_LOOKUPS_PER_S = 1.0
# Requests per second below which an error rate says nothing (one failed health probe of an idle platform).
MIN_REQUESTS_PER_S = 1.0
RESTARTS_IN_WINDOW = 2
RESTART_WINDOW_S = 900


@dataclass(frozen=True)
class Timing:
    """How fast the rules react: `window_s` is every rate's window; `for_divisor` divides each alert's `for:`.
    The shipped rules use the defaults; the real-server suite compresses both to see alerts fire in seconds."""

    window_s: int = 300
    for_divisor: int = 1

    def window(self) -> str:
        return _duration(self.window_s)

    def for_(self, seconds: int) -> str:
        return _duration(math.ceil(seconds / self.for_divisor))


SHIPPED = Timing()


def _duration(seconds: int) -> str:
    if seconds and seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds and seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"


@dataclass(frozen=True)
class Alert:
    """One alert rule. `guide` names the guide's threshold it implements (its action is quoted), or None for a
    platform alert beside the guide's; `for_s` is the shipped `for:`."""

    name: str
    expr: str
    for_s: int
    severity: str
    summary: str
    description: str
    action: str
    guide: str | None = None
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def condition(self) -> str:
        """The summary with its label templates as placeholders: what the plan and the docs say."""
        return re.sub(r"\{\{ \$labels\.(\w+) \}\}", r"<\1>", self.summary)

    def rule(self, timing: Timing) -> dict[str, Any]:
        annotations = {"summary": self.summary, "description": self.description, "action": self.action}
        if self.guide:
            annotations["guide_threshold"] = self.guide
        return {
            "alert": self.name,
            "expr": self.expr,
            "for": timing.for_(self.for_s),
            "labels": {"severity": self.severity, **self.labels},
            "annotations": annotations,
        }


def _thresholds(spec: PlatformSpec) -> AlertThresholds:
    t = spec.monitoring.thresholds
    if t is None:
        raise ValueError("the monitoring part is not enabled (banyan:monitoring.enabled): no thresholds resolved")
    return t


def _scope(spec: PlatformSpec) -> str:
    """A label matcher that keeps a rule to this stack's series: on Kubernetes the cluster's Prometheus scrapes
    other namespaces too; on Docker the stack's Prometheus scrapes only the stack."""
    return f'namespace="{spec.kubernetes.namespace}"' if spec.target == "kubernetes" else ""


FIVE_XX = 'status_class="5xx"'
MAX_CONNECTIONS = 'name="max_connections"'
A_CONTAINER = 'container!=""'
CPU = 'resource="cpu"'
MEMORY = 'resource="memory"'


def _sel(scope: str, *matchers: str) -> str:
    inner = ", ".join(m for m in (scope, *matchers) if m)
    return "{" + inner + "}" if inner else ""


has_nginx_metrics = nginx_metrics
has_redis_metrics = redis_metrics


def recording_rules(spec: PlatformSpec, timing: Timing = SHIPPED) -> list[dict[str, Any]]:
    """What dashboards and the alerts read: latency quantiles, rates, the connection ratio."""
    s = _scope(spec)
    w = timing.window()
    rules: list[dict[str, Any]] = []
    if has_nginx_metrics(spec):
        for q in ("0.5", "0.95", "0.99"):
            rules.append({
                "record": f"banyan:nginx_request_duration_seconds:p{q[2:].ljust(2, '0')}",
                "expr": f"histogram_quantile({q}, sum by (le) (rate(nginx_http_request_duration_seconds_bucket"
                        f"{_sel(s)}[{w}])))",
            })
        rules.append({"record": "banyan:nginx_requests:rate",
                      "expr": f"sum(rate(nginx_http_requests_total{_sel(s)}[{w}]))"})
        rules.append({"record": "banyan:nginx_errors:ratio",
                      "expr": f'sum(rate(nginx_http_requests_total{_sel(s, FIVE_XX)}[{w}])) / '
                              f"sum(rate(nginx_http_requests_total{_sel(s)}[{w}]))"})
    rules += [
        {"record": "banyan:postgres_connections:ratio",
         "expr": f"sum by (instance) (cnpg_backends_total{_sel(s)}) / on (instance) "
                 f'max by (instance) (cnpg_pg_settings_setting{_sel(s, MAX_CONNECTIONS)})'},
        {"record": "banyan:postgres_transactions:rate",
         "expr": f"sum by (instance) (rate(cnpg_pg_stat_database_xact_commit{_sel(s)}[{w}]) + "
                 f"rate(cnpg_pg_stat_database_xact_rollback{_sel(s)}[{w}]))"},
        {"record": "banyan:rabbitmq_published:rate",
         "expr": f"sum(rate(rabbitmq_global_messages_received_total{_sel(s)}[{w}]))"},
        {"record": "banyan:rabbitmq_delivered:rate",
         "expr": f"sum(rate(rabbitmq_global_messages_delivered_total{_sel(s)}[{w}]))"},
    ]
    if has_redis_metrics(spec):
        rules += [
            {"record": "banyan:redis_lookups:rate",
             "expr": f"sum(rate(redis_keyspace_hits_total{_sel(s)}[{w}]) + "
                     f"rate(redis_keyspace_misses_total{_sel(s)}[{w}]))"},
            {"record": "banyan:redis_hits:ratio",
             "expr": f"sum(rate(redis_keyspace_hits_total{_sel(s)}[{w}])) / banyan:redis_lookups:rate"},
        ]
    return rules


def alerts(spec: PlatformSpec, timing: Timing = SHIPPED) -> list[Alert]:
    """Every alert: one per threshold of the guide, then the platform's own."""
    t = _thresholds(spec)
    s = _scope(spec)
    w = timing.window()
    k8s = spec.target == "kubernetes"
    budget = spec.budget
    app_user = f'usename="{spec.postgres.user}"'
    out: list[Alert] = []
    if has_nginx_metrics(spec):
        out.append(Alert(
            "BanyanRequestLatencyHigh",
            f"banyan:nginx_request_duration_seconds:p95 * 1000 > {t.latency_p95_ms} "
            f"and banyan:nginx_requests:rate > {MIN_REQUESTS_PER_S}",
            300, "warning",
            f"Request latency p95 above {t.latency_p95_ms} ms",
            "95 % of requests through Nginx take up to {{ $value | humanize }} ms (the guide's target: "
            f"p95 < {t.latency_p95_ms} ms).",
            ACTIONS["latency"], guide=f"Request Latency (p95) < {t.latency_p95_ms}ms"))
    out.append(Alert(
        "BanyanQueueDepthHigh",
        f"max by (vhost, queue) (rabbitmq_detailed_queue_messages_ready{_sel(s)}) > {t.queue_depth}",
        120, "warning",
        f"Queue {{{{ $labels.queue }}}} holds more than {t.queue_depth} ready messages",
        "{{ $value }} messages wait in {{ $labels.vhost }}/{{ $labels.queue }} for a consumer (the guide's target: "
        f"depth < {t.queue_depth}): the consumers do not keep up, or none is connected.",
        ACTIONS["queue_depth"], guide=f"Queue Depth < {t.queue_depth}"))
    out.append(Alert(
        "BanyanDatabaseConnectionsHigh",
        f"banyan:postgres_connections:ratio * 100 > {t.db_connections_percent}",
        120, "warning",
        f"PostgreSQL {{{{ $labels.instance }}}} above {t.db_connections_percent} % of max_connections",
        f"{{{{ $value | humanize }}}} % of max_connections ({spec.postgres.max_connections}) are in use (the guide's "
        f"target, and the connection budget's limit: < {t.db_connections_percent} %).",
        ACTIONS["db_connections"], guide=f"Database Connections < {t.db_connections_percent}% max"))
    if has_redis_metrics(spec):
        out.append(Alert(
            "BanyanCacheHitRateLow",
            f"banyan:redis_hits:ratio * 100 < {t.cache_hit_percent} "
            f"and banyan:redis_lookups:rate > {CACHE_MIN_LOOKUPS_PER_S}",
            600, "warning",
            f"Redis hit rate below {t.cache_hit_percent} %",
            f"{{{{ $value | humanize }}}} % of lookups hit (the guide's target: > {t.cache_hit_percent} %).",
            ACTIONS["cache_hit"], guide=f"Cache Hit Rate > {t.cache_hit_percent}%"))
    if has_nginx_metrics(spec):
        out.append(Alert(
            "BanyanErrorRateHigh",
            f"banyan:nginx_errors:ratio * 100 > {t.error_rate_percent:g} "
            f"and banyan:nginx_requests:rate > {MIN_REQUESTS_PER_S}",
            300, "critical",
            f"More than {t.error_rate_percent:g} % of requests fail",
            "{{ $value | humanize }} % of requests through Nginx end in a 5xx status (the guide's target: "
            f"< {t.error_rate_percent:g} %).",
            ACTIONS["error_rate"], guide=f"Error Rate < {t.error_rate_percent:g}%"))
    if k8s:
        # The kubelet's cAdvisor (usage) over kube-state-metrics (limits): what every Prometheus Operator stack
        # (kube-prometheus-stack) already scrapes.
        out.append(Alert(
            "BanyanContainerCPUHigh",
            f'sum by (namespace, pod, container) (rate(container_cpu_usage_seconds_total{_sel(s, A_CONTAINER)}'
            f"[{w}])) / sum by (namespace, pod, container) "
            f'(kube_pod_container_resource_limits{_sel(s, CPU)}) * 100 > {t.cpu_percent}',
            600, "warning",
            f"{{{{ $labels.pod }}}}/{{{{ $labels.container }}}} above {t.cpu_percent} % of its CPU limit",
            f"The container uses {{{{ $value | humanize }}}} % of its CPU limit (the guide's threshold: "
            f"{t.cpu_percent} %).",
            ACTIONS["cpu"], guide=f"cpuUsage {t.cpu_percent}%"))
        out.append(Alert(
            "BanyanContainerMemoryHigh",
            f'sum by (namespace, pod, container) (container_memory_working_set_bytes{_sel(s, A_CONTAINER)}) '
            f"/ sum by (namespace, pod, container) "
            f'(kube_pod_container_resource_limits{_sel(s, MEMORY)}) * 100 > 90',
            600, "warning",
            "{{ $labels.pod }}/{{ $labels.container }} above 90 % of its memory limit",
            "The container holds {{ $value | humanize }} % of its memory limit; at 100 % the kernel kills it.",
            "Raise the part's memory limit (banyan:<part>.resources.limits.memory_mib) or scale out"))
    else:
        out.extend(_docker_container_alerts(t, w))

    # ---- the platform's own -------------------------------------------------------------------------------
    replicas = spec.postgres.replicas
    if replicas:
        out.append(Alert(
            "BanyanReplicaNotStreaming",
            f"(cnpg_pg_replication_in_recovery{_sel(s)} == 1 and cnpg_pg_replication_is_wal_receiver_up{_sel(s)} == 0)"
            f" or (cnpg_pg_replication_in_recovery{_sel(s)} == 0 and "
            f"cnpg_pg_replication_streaming_replicas{_sel(s)} < {replicas})",
            60, "critical",
            "A PostgreSQL replica is not streaming from the primary",
            f"{{{{ $labels.instance }}}}: a replica receives no WAL, or the primary streams to fewer than its "
            f"{replicas} replica(s). Reads from it go stale; a failover to it loses what it did not receive.",
            "Check the replica's log and its slot on the primary (README, PostgreSQL replicas)"))
        out.append(Alert(
            "BanyanReplicaLagging",
            f"cnpg_pg_replication_lag{_sel(s)} > {REPLICA_LAG_S}",
            120, "warning",
            f"A PostgreSQL replica lags more than {REPLICA_LAG_S} s",
            "{{ $labels.instance }} replays WAL {{ $value | humanize }} s behind the primary.",
            "Check the replica's disk and CPU, and long queries on it that hold replay back"))
    nodes = spec.rabbitmq.nodes
    # Docker: the node's aggregate job; Kubernetes: the PodMonitor's jobs (`<namespace>/<name>`), both endpoints.
    rabbit_job = _sel(s, f'job=~".*{spec.rabbitmq.name}.*"') if k8s else '{job="rabbitmq"}'
    out.append(Alert(
        "BanyanRabbitMQNodeDown",
        f"count(max by (instance) (up{rabbit_job}) == 1) < {nodes} or absent(up{rabbit_job} == 1)",
        60, "critical",
        f"Fewer than {nodes} RabbitMQ node(s) answer",
        f"Prometheus reaches {{{{ $value }}}} of the cluster's {nodes} RabbitMQ node(s). Quorum queues stay "
        f"available while a majority ({nodes // 2 + 1}) runs.",
        "Bring the node back (its container or pod); a node that cannot rejoin: README, RabbitMQ"))
    if nodes > 1:
        # RabbitMQ nodes form a full mesh: n x (n - 1) established Erlang distribution links (state 3), as the
        # RabbitMQ Cluster Operator's own InsufficientEstablishedErlangDistributionLinks rule counts them.
        out.append(Alert(
            "BanyanRabbitMQPartition",
            f"count(erlang_vm_dist_node_state{_sel(s)} == 3) < {nodes * (nodes - 1)} "
            f"and count(max by (instance) (up{rabbit_job}) == 1) == {nodes}",
            60, "critical",
            "RabbitMQ nodes do not see one another",
            f"Every one of the {nodes} nodes answers, but fewer than the {nodes * (nodes - 1)} distribution links "
            "of a full mesh are up: a network partition, or a node that left the cluster.",
            "Heal the network between the nodes; then restart the minority side (README, RabbitMQ)"))
    if spec.redis.mode == "cluster" and has_redis_metrics(spec):
        out.append(Alert(
            "BanyanRedisClusterStateNotOk",
            f"redis_cluster_state{_sel(s)} == 0",
            60, "critical",
            "Redis Cluster state is not ok on {{ $labels.instance }}",
            "The node reports cluster_state:fail: some hash slots have no reachable master, and commands for "
            "them fail.",
            "Bring the failed master back, or let its replica fail over (README, Redis)"))
    restarts = (f"increase(kube_pod_container_status_restarts_total{_sel(s)}[{_duration(RESTART_WINDOW_S)}])"
                if k8s else
                f"changes(cnpg_pg_postmaster_start_time[{_duration(RESTART_WINDOW_S)}]) or "
                f"changes(redis_start_time_seconds[{_duration(RESTART_WINDOW_S)}]) or "
                f"resets(rabbitmq_erlang_uptime_seconds[{_duration(RESTART_WINDOW_S)}])")
    out.append(Alert(
        "BanyanInstanceRestarting",
        f"({restarts}) >= {RESTARTS_IN_WINDOW}",
        0, "warning",
        ("{{ $labels.pod }}/{{ $labels.container }}" if k8s else "{{ $labels.instance }}") + " restarted repeatedly",
        f"It restarted {{{{ $value }}}} times within {RESTART_WINDOW_S // 60} minutes: it crashes, or is "
        "killed at its memory limit.",
        "Read its log; raise its memory limit if it was OOM-killed"))
    down = _sel(s) if k8s else ""
    out.append(Alert(
        "BanyanTargetDown",
        f"up{down} == 0",
        120, "warning",
        "{{ $labels.job }} target {{ $labels.instance }} does not answer its scrape",
        "Its metrics (and the alerts built on them) are missing while it is down.",
        "Check the instance or its exporter"))
    pg_down = f"cnpg_collector_up{_sel(s)} == 0" if k8s else "pg_up == 0"
    out.append(Alert(
        "BanyanPostgresDown",
        pg_down,
        60, "critical",
        "PostgreSQL {{ $labels.instance }} does not answer its exporter",
        "The exporter answers, but cannot query the server.",
        "Check the instance's container or pod and its log"))
    out.append(Alert(
        "BanyanConnectionBudgetExceeded",
        f'sum by (instance) (cnpg_backends_total{_sel(s, app_user)}) > {budget.total}',
        300, "warning",
        f"Applications hold more connections than the connection budget plans for ({budget.total})",
        f"The budget ({budget.arithmetic()}) plans for {budget.total} application connections; "
        "{{ $value }} are open on {{ $labels.instance }}: a client outside the plan, or pools larger than "
        "configured, eat the headroom before the 80 % alert.",
        "Find the extra clients (pg_stat_activity); raise the budget in the stack, not only the pools"))
    return out


def _docker_container_alerts(t: AlertThresholds, w: str) -> list[Alert]:
    """The two container alerts on Docker, from the stack's cAdvisor (its `cadvisor` job keeps only this stack's
    containers, `name` the container's name): usage against the container's own limit, the CPU quota per period
    (`cpus`) and the memory limit. A container without a limit has no quota series, or a limit of 0: no ratio."""
    per = "max by (name, container)"
    job = '{job="cadvisor"}'
    return [
        Alert(
            "BanyanContainerCPUHigh",
            f"sum by (name, container) (rate(container_cpu_usage_seconds_total{job}[{w}])) / "
            f"({per} (container_spec_cpu_quota{job} > 0) / {per} (container_spec_cpu_period{job} > 0)) "
            f"* 100 > {t.cpu_percent}",
            600, "warning",
            f"{{{{ $labels.name }}}} above {t.cpu_percent} % of its CPU limit",
            f"The container uses {{{{ $value | humanize }}}} % of its CPU limit (the guide's threshold: "
            f"{t.cpu_percent} %).",
            ACTIONS["cpu"], guide=f"cpuUsage {t.cpu_percent}%"),
        Alert(
            "BanyanContainerMemoryHigh",
            f"{per} (container_memory_working_set_bytes{job}) / {per} (container_spec_memory_limit_bytes{job} > 0) "
            "* 100 > 90",
            600, "warning",
            "{{ $labels.name }} above 90 % of its memory limit",
            "The container holds {{ $value | humanize }} % of its memory limit; at 100 % the kernel kills it.",
            "Raise the part's memory limit (banyan:<part>.resources.limits.memory_mib) or scale out"),
    ]


def rule_groups(spec: PlatformSpec, timing: Timing = SHIPPED) -> list[dict[str, Any]]:
    """The groups of both targets: Docker's rule file holds them, Kubernetes' PrometheusRule's spec.groups too."""
    groups = [
        {"name": "banyan.recording", "rules": recording_rules(spec, timing)},
        {"name": "banyan.alerts", "rules": [a.rule(timing) for a in alerts(spec, timing)]},
    ]
    # PostgreSQL backups (banyan:postgres.backup): their rules are the postgres part's (components/postgres/alerts.py).
    if spec.postgres.backup is not None:
        groups.append(postgres_alerts.rule_group(spec))
    return groups


def _yaml(doc: object) -> str:
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=1000, allow_unicode=True)


def render_rules(spec: PlatformSpec, timing: Timing = SHIPPED) -> str:
    return "# Rendered by banyan (components/monitoring/config.py); edits here are overwritten.\n" + _yaml(
        {"groups": rule_groups(spec, timing)})


# ---- Docker: Prometheus, Alertmanager, exporters ---------------------------------------------------------------

def _static(targets: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    """(address, instance) pairs: the instance label names the platform's instance, not the exporter."""
    return [{"targets": [addr], "labels": {"instance": inst}} for addr, inst in targets]


def scrape_configs(spec: PlatformSpec) -> list[dict[str, Any]]:
    pg = spec.postgres
    mq = spec.rabbitmq
    rd = spec.redis
    jobs: list[dict[str, Any]] = [
        {"job_name": "postgres",
         "static_configs": _static([(f"{postgres_exporter_host(i)}:{POSTGRES_EXPORTER_PORT}", i)
                                    for i in pg.instance_names])},
        {"job_name": "rabbitmq",
         "static_configs": _static([(f"{n}:{RABBITMQ_PROMETHEUS_PORT}", n) for n in mq.instance_names])},
        # Per-queue depth and consumers (the plugin's aggregated /metrics has no queue label).
        {"job_name": "rabbitmq-queues",
         "metrics_path": "/metrics/detailed",
         "params": {"family": ["queue_coarse_metrics", "queue_consumer_count"]},
         "static_configs": _static([(f"{n}:{RABBITMQ_PROMETHEUS_PORT}", n) for n in mq.instance_names])},
        # One exporter, every node through its /scrape endpoint (the exporter's multi-target mode).
        {"job_name": "redis",
         "metrics_path": "/scrape",
         "static_configs": _static([(f"redis://{n}:{rd.port}", n) for n in rd.instance_names]),
         "relabel_configs": [
             {"source_labels": ["__address__"], "target_label": "__param_target"},
             {"target_label": "__address__", "replacement": f"{REDIS_EXPORTER_HOST}:{REDIS_EXPORTER_PORT}"},
         ]},
    ]
    backup_target = postgres_alerts.scrape_target(spec)
    if backup_target is not None:
        host, port = backup_target
        jobs.append({"job_name": "postgres-backup", "metrics_path": postgres_backup.METRICS_HTTP_PATH,
                     "static_configs": _static([(f"{host}:{port}", host)])})
    if has_nginx_metrics(spec):
        jobs.append({"job_name": "nginx",
                     "static_configs": _static([(f"{NGINX_METRICS_HOST}:{MTAIL_PORT}", spec.nginx.instance_names[0])])})
    jobs.append(cadvisor_scrape_config(spec))
    jobs += [
        {"job_name": "prometheus", "static_configs": _static([(f"localhost:{PROMETHEUS_PORT}", PROMETHEUS_HOST)])},
        {"job_name": "alertmanager",
         "static_configs": _static([(f"{ALERTMANAGER_HOST}:{ALERTMANAGER_PORT}", ALERTMANAGER_HOST)])},
    ]
    return jobs


def cadvisor_scrape_config(spec: PlatformSpec) -> dict[str, Any]:
    """cAdvisor sees every container of the host: keep the series of this stack's containers only (by the labels
    every one of them carries), and of their labels the container's name, its instance and its part."""
    keep = f"{re.escape(spec.project)};{re.escape(spec.stack)}"
    return {
        "job_name": "cadvisor",
        "static_configs": _static([(f"{CADVISOR_HOST}:{CADVISOR_PORT}", CADVISOR_HOST)]),
        "metric_relabel_configs": [
            {"source_labels": ["container_label_banyan_project", "container_label_banyan_stack"], "regex": keep,
             "action": "keep"},
            {"source_labels": ["container_label_banyan_instance"], "target_label": "container"},
            {"source_labels": ["container_label_banyan_part"], "target_label": "part"},
            {"regex": "id|image|container_label_.+", "action": "labeldrop"},
        ],
    }


def render_prometheus_yml(spec: PlatformSpec, *, rules_path: str = RULES_PATH) -> str:
    mon = spec.monitoring
    doc = {
        "global": {
            "scrape_interval": _duration(mon.scrape_interval_s),
            "scrape_timeout": _duration(min(10, mon.scrape_interval_s)),
            "evaluation_interval": _duration(mon.evaluation_interval_s),
            "external_labels": {"project": spec.project, "stack": spec.stack},
        },
        "rule_files": [rules_path],
        "alerting": {"alertmanagers": [
            {"static_configs": [{"targets": [f"{ALERTMANAGER_HOST}:{ALERTMANAGER_PORT}"]}]}]},
        "scrape_configs": scrape_configs(spec),
    }
    return "# Rendered by banyan (components/monitoring/config.py); edits here are overwritten.\n" + _yaml(doc)


def render_alertmanager_yml(spec: PlatformSpec) -> str:
    """One route; its receiver is the stack's webhook, or none (alerts are then only shown, never sent)."""
    url = spec.monitoring.alertmanager_webhook_url
    receiver: dict[str, Any] = {"name": "stack"}
    if url:
        receiver["webhook_configs"] = [{"url": url, "send_resolved": True}]
    doc = {
        "route": {"receiver": "stack", "group_by": ["alertname", "instance"], "group_wait": "30s",
                  "group_interval": "5m", "repeat_interval": "4h"},
        # A firing critical alert silences the warnings of the same instance it explains (only alerts that name an
        # instance: Alertmanager counts two missing labels as equal).
        "inhibit_rules": [{"source_matchers": ['severity="critical"', 'instance=~".+"'],
                           "target_matchers": ['severity="warning"', 'instance=~".+"'], "equal": ["instance"]}],
        "receivers": [receiver],
    }
    return "# Rendered by banyan (components/monitoring/config.py); edits here are overwritten.\n" + _yaml(doc)


# The same query names and columns as CloudNativePG's default monitoring (its exporter prefixes them `cnpg_`), so the
# rules read one set of metric names on both targets. Docker's exporter logs in as the applications' role (the
# superuser is refused over TCP), which sees every session but not other roles' states: those count as `unknown`.
PG_QUERIES: dict[str, Any] = {
    "cnpg_backends": {
        "query": "SELECT datname, usename, COALESCE(state, 'unknown') AS state, count(*) AS total "
                 "FROM pg_catalog.pg_stat_activity WHERE backend_type = 'client backend' "
                 "GROUP BY datname, usename, state",
        "metrics": [
            {"datname": {"usage": "LABEL", "description": "Name of the database"}},
            {"usename": {"usage": "LABEL", "description": "Name of the user"}},
            {"state": {"usage": "LABEL", "description": "State of the backend (unknown: another role's)"}},
            {"total": {"usage": "GAUGE", "description": "Number of client backends"}},
        ],
    },
    "cnpg_pg_settings": {
        "query": "SELECT name, setting::float AS setting FROM pg_catalog.pg_settings WHERE name = 'max_connections'",
        "metrics": [
            {"name": {"usage": "LABEL", "description": "Name of the setting"}},
            {"setting": {"usage": "GAUGE", "description": "Setting value"}},
        ],
    },
    "cnpg_pg_replication": {
        "query": "SELECT CASE WHEN (NOT pg_catalog.pg_is_in_recovery() "
                 "OR pg_catalog.pg_last_wal_receive_lsn() = pg_catalog.pg_last_wal_replay_lsn()) THEN 0 "
                 "ELSE GREATEST(0, EXTRACT(EPOCH FROM (pg_catalog.now() - pg_catalog.pg_last_xact_replay_timestamp())))"
                 " END AS lag, "
                 "CASE WHEN pg_catalog.pg_is_in_recovery() THEN 1 ELSE 0 END AS in_recovery, "
                 # The view has a row while a WAL receiver runs; its columns are hidden from an unprivileged role.
                 "CASE WHEN EXISTS (TABLE pg_catalog.pg_stat_wal_receiver) THEN 1 ELSE 0 END AS is_wal_receiver_up, "
                 "(SELECT count(*) FROM pg_catalog.pg_stat_replication) AS streaming_replicas",
        "metrics": [
            {"lag": {"usage": "GAUGE", "description": "Replication lag behind primary in seconds"}},
            {"in_recovery": {"usage": "GAUGE", "description": "Whether the instance is in recovery"}},
            {"is_wal_receiver_up": {"usage": "GAUGE", "description": "Whether the instance wal_receiver is up"}},
            {"streaming_replicas": {"usage": "GAUGE", "description": "Number of streaming replicas connected"}},
        ],
    },
    "cnpg_pg_postmaster": {
        "query": "SELECT EXTRACT(EPOCH FROM pg_catalog.pg_postmaster_start_time()) AS start_time",
        "metrics": [{"start_time": {"usage": "GAUGE", "description": "Time at which postgres started"}}],
    },
    "cnpg_pg_stat_database": {
        "query": "SELECT datname, xact_commit, xact_rollback FROM pg_catalog.pg_stat_database "
                 "WHERE datname IS NOT NULL",
        "metrics": [
            {"datname": {"usage": "LABEL", "description": "Name of this database"}},
            {"xact_commit": {"usage": "COUNTER", "description": "Transactions committed"}},
            {"xact_rollback": {"usage": "COUNTER", "description": "Transactions rolled back"}},
        ],
    },
}


def render_pg_queries() -> str:
    return "# Rendered by banyan (components/monitoring/config.py); edits here are overwritten.\n" + _yaml(PG_QUERIES)


def postgres_exporter_args() -> list[str]:
    """Only the queries above (and pg_up): the built-in sets and collectors would double the series under other
    names, and each collector retries a server that is down, which stretches the scrape past its timeout."""
    return ["--disable-default-metrics", "--disable-settings-metrics", "--no-collector.database",
            "--no-collector.bgwriter", f"--extend.query-path={PG_QUERIES_PATH}",
            f"--web.listen-address=:{POSTGRES_EXPORTER_PORT}"]


def postgres_exporter_uri(spec: PlatformSpec, instance: str) -> str:
    return f"{instance}:{spec.postgres.port}/{spec.postgres.database}?sslmode=disable"


# The exporter logs in as its own ACL user (components/redis/config.py MONITOR_USER, MONITOR_ACL: every command it
# sends with these flags, and nothing else): the name in REDIS_USER, its password in REDIS_PASSWORD (main.go's
# --redis.user / --redis.password defaults in v1.45.0).
REDIS_EXPORTER_USER_ENV = "REDIS_USER"
REDIS_EXPORTER_PASSWORD_ENV = "REDIS_PASSWORD"


def redis_exporter_args() -> list[str]:
    """--config-command=-: the exporter's `CONFIG GET *` answers requirepass and masterauth (the administrator's
    password) to whoever may run it, so its user may not. v1.45.0 sends the name given instead of CONFIG, and Redis
    answers an unknown command `-` before any ACL check (no ACL LOG entry, no redis_config_* metric, which no rule
    reads); releases from v1.61.0 on skip the call for `-` (upstream #915)."""
    return [f"--web.listen-address=:{REDIS_EXPORTER_PORT}", "--config-command=-"]


# ---- Nginx: mtail over the access log ----------------------------------------------------------------------

def nginx_syslog_target(host: str) -> str:
    """The access_log destination for Nginx (the `banyan` log format components/nginx/config.py defines)."""
    return f"syslog:server={host}:{MTAIL_SYSLOG_PORT},nohostname"


def render_mtail_program() -> str:
    """Requests by status class and method, and request and upstream durations as histograms, from each line of
    Nginx's `banyan` log format (`... "GET / HTTP/1.1" 200 12 rt=0.003 ua="..." us="200" urt="0.002" ...`).

    Only proxied requests count (`ua` names a gateway): Nginx's own health answers are no user's traffic. Nginx
    logs times in whole milliseconds, so each is observed at the middle of its millisecond (+0.5 ms), which also
    keeps a logged 0.000 inside the first bucket (mtail counts a 0 in no bucket)."""
    buckets = ", ".join(f"{b:g}" for b in LATENCY_BUCKETS)
    return "\n".join([
        "# Rendered by banyan (components/monitoring/config.py); edits here are overwritten.",
        "counter nginx_http_requests_total by status_class, method",
        f"histogram nginx_http_request_duration_seconds buckets {buckets}",
        f"histogram nginx_upstream_response_duration_seconds buckets {buckets}",
        "",
        # The upstream time is the last of a comma-separated list when Nginx retried another gateway.
        r'/"(?P<method>[A-Z]+) [^"]*" (?P<status>\d)\d\d \d+ rt=(?P<rt>\d+\.\d+) ua="(?P<ua>[^"]*)" us="[^"]*" '
        r'urt="(?:[^"]*[ ,])?(?P<urt>\d+\.\d+|-)"/ {',
        '  $ua != "-" {',
        '    nginx_http_requests_total[$status + "xx"][$method]++',
        "    nginx_http_request_duration_seconds = float($rt) + 0.0005",
        '    $urt != "-" {',
        "      nginx_upstream_response_duration_seconds = float($urt) + 0.0005",
        "    }",
        "  }",
        "}",
        "",
    ])


# mtail (3.0.0~rc50, measured in tests/servers) reads one datagram per poll of its socket: at the default 250 ms it
# keeps 4 lines a second and drops the rest. Every millisecond it keeps about 1000 a second for 3 % of a core;
# past that its metrics are a sample of the requests (ratios and quantiles hold, absolute rates undercount).
MTAIL_POLL = "1ms"


def mtail_args(syslog_address: str = "0.0.0.0") -> list[str]:
    """`syslog_address`: where mtail takes Nginx's datagrams (Kubernetes: the pod's loopback, Nginx beside it)."""
    return ["--progs", MTAIL_PROGS, "--logs", f"udp://{syslog_address}:{MTAIL_SYSLOG_PORT}",
            "--port", str(MTAIL_PORT), "--poll_interval", MTAIL_POLL, "--logtostderr", "--emit_prog_label=false"]
