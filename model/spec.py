"""The resolved platform: every count, limit, name and port decided once, frozen, read by every component."""

from __future__ import annotations

import hashlib
from typing import Literal

from pydantic import BaseModel, ConfigDict

Target = Literal["docker", "kubernetes", "swarm"]


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Resources(Frozen):
    cpu_millis: int
    memory_mib: int


class ResourceSpec(Frozen):
    """Per instance. `requests` are Kubernetes requests and Docker reservations."""

    limits: Resources
    requests: Resources


class AutoscalingSpec(Frozen):
    """HorizontalPodAutoscaler bounds; `enabled` is false on Docker, which has no autoscaler."""

    enabled: bool
    min_replicas: int
    max_replicas: int
    cpu_percent: int
    memory_percent: int


class PoolSpec(Frozen):
    min: int
    max: int
    idle_timeout_ms: int


class WorkloadSpec(Frozen):
    """A stateless part (the gateway or a business service)."""

    name: str
    image: str
    command: tuple[str, ...] | None
    port: int
    instances: int
    autoscaling: AutoscalingSpec
    resources: ResourceSpec
    health_path: str
    # Kubernetes liveness: an HTTP path that checks no dependency, or None for a TCP connect to `port`.
    liveness_path: str | None
    env: tuple[tuple[str, str], ...]
    # True when the stack file marks the key holding `env` as secret: every value then travels as a secret.
    env_secret: bool
    database_client: bool
    pool: PoolSpec

    @property
    def max_instances(self) -> int:
        """The most instances that can ever run at once: what the connection budget must plan for."""
        return self.autoscaling.max_replicas if self.autoscaling.enabled else self.instances

    @property
    def instance_names(self) -> tuple[str, ...]:
        return tuple(f"{self.name}-{i}" for i in range(1, self.instances + 1))


class QueueScalingSpec(Frozen):
    """A service scaled on the depth of its queues by KEDA (Kubernetes): which queues, the target per instance
    (model/capacity.py, queue_target_per_instance) and the replicas while the depth cannot be read."""

    # Exact queue names; empty when `pattern` names them.
    queues: tuple[str, ...]
    pattern: str | None
    # Messages (ready + unacknowledged) per instance, as KEDA's trigger `value` (a decimal, at most 2 places).
    per_instance: str
    fallback_replicas: int


class ServiceSpec(WorkloadSpec):
    workload: Literal["cpu", "io", "memory"]
    prefetch: int
    # Messages waiting that call for more instances (the guide's Queue Depth < 100): KEDA's target, the plan's advice.
    queue_depth: int = 100
    # None: the HorizontalPodAutoscaler owns the replicas (and always on Docker, which has no autoscaler).
    queue_scaling: QueueScalingSpec | None = None


class RateLimitSpec(Frozen):
    store: Literal["redis", "memory"]
    max: int
    window_ms: int


class CircuitBreakerSpec(Frozen):
    failure_threshold: int
    success_threshold: int
    recovery_timeout_ms: int


class GatewaySpec(WorkloadSpec):
    capacity_rps: int
    rate_limit: RateLimitSpec
    circuit_breaker: CircuitBreakerSpec


class BackupSpec(Frozen):
    """PostgreSQL backups, resolved (model/backup.py): WAL archiving and full base backups to one repository."""

    # None: Docker's local volume (Kubernetes always names an object store).
    repository: str | None
    endpoint_url: str | None
    region: str
    # Both or neither; always handed to resources as secrets.
    access_key_id: str | None
    secret_access_key: str | None
    retention_days: int
    full_backup_hours: int
    # The staleness alert: the newest full backup is older than full_backup_hours plus this.
    stale_margin_hours: int
    # Docker: WAL queued for a failing archive before it is dropped (pgBackRest's archive-push-queue-max).
    max_wal_backlog_mib: int
    # The name backups are kept under in the repository (pgBackRest's stanza, Barman's server name).
    server_name: str
    # Kubernetes: where the instance pods may reach the object store (None: any address, on its port only).
    object_store_cidrs: tuple[str, ...] | None = None

    @property
    def stale_after_s(self) -> int:
        return (self.full_backup_hours + self.stale_margin_hours) * 3600


class RestoreSpec(Frozen):
    """Bootstrap the primary from `BackupSpec`'s repository: to the latest point, or to `target_time`."""

    target_time: str | None
    source_server: str
    over_existing_data: bool

    @property
    def restore_id(self) -> str:
        """Names this restore: the primary's label and the marker beside its data say it was done."""
        text = f"{self.source_server}|{self.target_time or 'latest'}"
        return hashlib.sha256(text.encode()).hexdigest()[:12]


class PostgresSpec(Frozen):
    name: str
    image: str
    version: int
    port: int
    replicas: int
    max_connections: int
    max_connections_derived: bool
    database: str
    user: str
    replication_user: str
    storage_gib: int
    resources: ResourceSpec
    # postgresql.conf values derived from the memory limit and the connection budget.
    shared_buffers_mib: int
    effective_cache_size_mib: int
    work_mem_kib: int
    maintenance_work_mem_mib: int
    max_wal_senders: int
    max_replication_slots: int
    # None: off (the rendered resources are exactly those of a stack without backups).
    backup: BackupSpec | None = None
    restore: RestoreSpec | None = None

    @property
    def backup_name(self) -> str:
        """Docker: the container that takes base backups and reports the archive's state."""
        return f"{self.name}-backup"

    @property
    def primary_name(self) -> str:
        return f"{self.name}-primary"

    @property
    def replica_names(self) -> tuple[str, ...]:
        return tuple(f"{self.name}-replica-{i}" for i in range(1, self.replicas + 1))

    @property
    def instance_names(self) -> tuple[str, ...]:
        return (self.primary_name, *self.replica_names)


class RabbitMQSpec(Frozen):
    name: str
    image: str
    version: str
    nodes: int
    port: int
    management_port: int
    management_host_port: int | None
    persistence: bool
    default_queue_type: Literal["quorum", "classic"]
    storage_gib: int
    resources: ResourceSpec
    memory_high_watermark_mib: int

    @property
    def instance_names(self) -> tuple[str, ...]:
        return tuple(f"{self.name}-{i}" for i in range(1, self.nodes + 1))


class RedisSpec(Frozen):
    name: str
    image: str
    version: str
    nodes: int
    mode: Literal["standalone", "cluster"]
    masters: int
    replicas_per_master: int
    port: int
    bus_port: int
    persistence: bool
    storage_gib: int
    resources: ResourceSpec
    maxmemory_mib: int

    @property
    def instance_names(self) -> tuple[str, ...]:
        return tuple(f"{self.name}-node-{i}" for i in range(1, self.nodes + 1))

    @property
    def cluster_create_name(self) -> str:
        """The one-shot step that creates the cluster (Docker): not a node."""
        return f"{self.name}-cluster-create"


class NginxSpec(Frozen):
    name: str
    image: str
    public_port: int
    # Docker: the host address the public port is published on.
    publish_address: str
    listen_port: int
    instances: int
    keepalive_connections: int
    connect_timeout_s: int
    read_timeout_s: int
    service_type: Literal["LoadBalancer", "NodePort", "ClusterIP"]
    resources: ResourceSpec

    @property
    def instance_names(self) -> tuple[str, ...]:
        if self.instances == 1:
            return (self.name,)
        return tuple(f"{self.name}-{i}" for i in range(1, self.instances + 1))


class BudgetLine(Frozen):
    client: str
    max_instances: int
    pool_max: int

    @property
    def connections(self) -> int:
        return self.max_instances * self.pool_max


class ConnectionBudget(Frozen):
    """Connections every database client can open against one PostgreSQL server, against its limit."""

    lines: tuple[BudgetLine, ...]
    max_connections: int
    limit_percent: int

    @property
    def total(self) -> int:
        return sum(line.connections for line in self.lines)

    @property
    def usable(self) -> float:
        return self.max_connections * self.limit_percent / 100

    @property
    def fits(self) -> bool:
        return self.total < self.usable

    @property
    def usable_text(self) -> str:
        """`usable` in plain digits (45.6, 1000008), never in exponent form."""
        return f"{self.usable:.2f}".rstrip("0").rstrip(".")

    def arithmetic(self) -> str:
        terms = " + ".join(f"{ln.client} {ln.max_instances} x {ln.pool_max}" for ln in self.lines) or "no clients"
        return (
            f"{terms} = {self.total} connections; {self.limit_percent}% of max_connections "
            f"{self.max_connections} = {self.usable_text}"
        )


class KubernetesSpec(Frozen):
    namespace: str
    kubeconfig: str | None
    context: str | None
    install_operators: bool
    storage_class: str | None
    cluster_domain: str
    dns_service: str
    dns_namespace: str
    # Sorted (key, value) pairs: inputs stay deterministic.
    dns_pod_labels: tuple[tuple[str, str], ...]
    # None: any address (on the API server's ports only).
    api_server_cidrs: tuple[str, ...] | None
    install_keda: bool = True
    keda_namespace: str = "keda"
    keda_operator_labels: tuple[tuple[str, str], ...] = (("app.kubernetes.io/name", "keda-operator"),)

    @property
    def dns_host(self) -> str:
        """The cluster DNS Service's fully qualified name."""
        return f"{self.dns_service}.{self.dns_namespace}.svc.{self.cluster_domain}"

    def service_host(self, service: str) -> str:
        """A Service of the stack's namespace, fully qualified (resolves from any namespace)."""
        return f"{service}.{self.namespace}.svc.{self.cluster_domain}"


class AlertThresholds(Frozen):
    """The Scalability Guide's Target Metrics and Monitoring Thresholds, resolved (model/thresholds.py)."""

    latency_p95_ms: int
    queue_depth: int
    # The connection budget's own limit (banyan's ConnectionBudget.limit_percent): one number for both.
    db_connections_percent: int
    cache_hit_percent: int
    error_rate_percent: float
    cpu_percent: int


class MonitoringSpec(Frozen):
    """The monitoring part (banyan:monitoring); on Kubernetes also the scrapers admitted to the metrics ports."""

    namespace: str
    pod_labels: tuple[tuple[str, str], ...]
    enabled: bool = False
    monitor_labels: tuple[tuple[str, str], ...] = ()
    install_operator: bool = False
    prometheus_port: int = 9090
    scrape_interval_s: int = 15
    evaluation_interval_s: int = 15
    retention_days: int = 15
    alertmanager_webhook_url: str | None = None
    mtail_image: str | None = None
    # None only where nothing is monitored (enabled false).
    thresholds: AlertThresholds | None = None


class SwarmSpec(Frozen):
    """Docker Swarm: where the data tier's single-replica services run (banyan:swarm.data_placement)."""

    data_placement: Literal["manager", "labels"] = "manager"
    publish_mode: Literal["ingress", "host"] = "ingress"


class PlatformSpec(Frozen):
    project: str
    stack: str
    target: Target
    tier: Literal["small", "medium", "large"]
    protect: bool
    gateway: GatewaySpec
    services: tuple[ServiceSpec, ...]
    postgres: PostgresSpec
    rabbitmq: RabbitMQSpec
    redis: RedisSpec
    nginx: NginxSpec
    kubernetes: KubernetesSpec
    monitoring: MonitoringSpec
    budget: ConnectionBudget
    warnings: tuple[str, ...]
    # Docker: check the engine before registering anything (infra/preflight.py).
    preflight: bool
    # banyan:require_digests: every image carries a digest (checked when resolving; marked for the policy pack).
    require_digests: bool = False
    # Swarm target settings (unused elsewhere).
    swarm: SwarmSpec = SwarmSpec()

    @property
    def workloads(self) -> tuple[WorkloadSpec, ...]:
        return (self.gateway, *self.services)

    @property
    def queue_scaled(self) -> tuple[ServiceSpec, ...]:
        """The services KEDA scales on queue depth (Kubernetes); none has a HorizontalPodAutoscaler of banyan's."""
        return tuple(s for s in self.services if s.queue_scaling is not None)
