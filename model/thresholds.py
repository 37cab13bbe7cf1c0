"""The Scalability Guide's alert thresholds (Performance Metrics: Target Metrics; Monitoring Thresholds), the one
home of those numbers, and the monitoring part resolved from `banyan:monitoring`."""

from __future__ import annotations

from model.capacity import BUDGET_LIMIT_PERCENT
from model.config import MonitoringConfig
from model.spec import AlertThresholds, ConnectionBudget, MonitoringSpec, PlatformSpec

# Target Metrics: "Request Latency (p95) < 200ms: Scale API Gateway"; Monitoring Thresholds: responseTime 200 ms.
LATENCY_P95_MS = 200
# "Queue Depth < 100: Scale service handlers"; queueDepth threshold 100.
QUEUE_DEPTH = 100
# "Database Connections < 80% max: Increase pool or add replicas": the connection budget's limit (model/capacity.py).
DB_CONNECTIONS_PERCENT = BUDGET_LIMIT_PERCENT
# "Cache Hit Rate > 90%: Increase cache size or TTL".
CACHE_HIT_PERCENT = 90
# "Error Rate < 1%: Investigate and fix".
ERROR_RATE_PERCENT = 1.0
# Monitoring Thresholds: cpuUsage 70 %, "Scale containers".
CPU_PERCENT = 70

# The guide's scaling action per threshold, quoted in every alert's annotations.
ACTIONS = {
    "latency": "Scale API Gateway",
    "queue_depth": "Scale service handlers",
    "db_connections": "Increase pool or add replicas",
    "cache_hit": "Increase cache size or TTL",
    "error_rate": "Investigate and fix",
    "cpu": "Scale containers",
}


# Docker host names of the monitoring part's containers (their network aliases), beside the platform's own.
PROMETHEUS_HOST = "prometheus"
ALERTMANAGER_HOST = "alertmanager"
REDIS_EXPORTER_HOST = "redis-exporter"
NGINX_METRICS_HOST = "nginx-metrics"
CADVISOR_HOST = "cadvisor"


def postgres_exporter_host(instance: str) -> str:
    return f"{instance}-exporter"


def monitoring_hosts(postgres_instances: tuple[str, ...]) -> tuple[str, ...]:
    """Every host name the monitoring part puts on the Docker network."""
    return (PROMETHEUS_HOST, ALERTMANAGER_HOST, REDIS_EXPORTER_HOST, NGINX_METRICS_HOST, CADVISOR_HOST,
            *map(postgres_exporter_host, postgres_instances))


def guide_thresholds(budget: ConnectionBudget) -> AlertThresholds:
    """The guide's numbers; the database one is the budget's own limit, so alert and plan never disagree."""
    return AlertThresholds(latency_p95_ms=LATENCY_P95_MS, queue_depth=QUEUE_DEPTH,
                           db_connections_percent=budget.limit_percent, cache_hit_percent=CACHE_HIT_PERCENT,
                           error_rate_percent=ERROR_RATE_PERCENT, cpu_percent=CPU_PERCENT)


def monitoring_spec(config: MonitoringConfig, budget: ConnectionBudget) -> MonitoringSpec:
    return MonitoringSpec(
        namespace=config.namespace,
        pod_labels=tuple(sorted(config.pod_labels.items())),
        enabled=config.enabled,
        monitor_labels=tuple(sorted(config.monitor_labels.items())),
        install_operator=config.install_operator,
        prometheus_port=config.prometheus_port,
        scrape_interval_s=config.scrape_interval_s,
        evaluation_interval_s=config.evaluation_interval_s,
        retention_days=config.retention_days,
        alertmanager_webhook_url=config.alertmanager_webhook_url,
        mtail_image=config.mtail_image,
        thresholds=guide_thresholds(budget) if config.enabled else None,
    )


def nginx_metrics(spec: PlatformSpec) -> bool:
    """Nginx's metrics come from mtail, whose image the stack must name: a container on Docker, a sidecar in every
    Nginx pod on Kubernetes (where the monitoring part is enabled)."""
    return spec.monitoring.mtail_image is not None and (
        spec.target == "docker" or (spec.target == "kubernetes" and spec.monitoring.enabled))


def redis_metrics(spec: PlatformSpec) -> bool:
    """Redis' metrics come from the Redis exporter: a container on Docker, a sidecar in every Redis pod on
    Kubernetes (where the monitoring part is enabled)."""
    return spec.target == "docker" or (spec.target == "kubernetes" and spec.monitoring.enabled)


def redis_monitor_user(spec: PlatformSpec) -> bool:
    """Whether the Redis nodes define the monitoring exporter's own ACL user: where the monitoring part is built
    (banyan:monitoring.enabled, and a target it is built for) and scrapes Redis."""
    return spec.monitoring.enabled and spec.target != "swarm" and redis_metrics(spec)


def monitoring_warnings(spec: PlatformSpec) -> list[str]:
    """What an enabled monitoring part will not watch on this stack, said at preview and in the plan."""
    mon = spec.monitoring
    if not mon.enabled:
        return []
    if spec.target == "swarm":
        return ["banyan:monitoring.enabled: the monitoring part is not built for target swarm yet; ignored"]
    if mon.mtail_image is None:
        return ["banyan:monitoring.mtail_image is unset: no Nginx request, status and latency metrics, and so no "
                "latency (p95) and error-rate alerts; build an mtail image (scripts/build-images) and name it"]
    return []
