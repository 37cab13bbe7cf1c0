"""The resolved platform: every count, limit, name and port decided once, frozen, read by every component."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

Target = Literal["docker", "kubernetes"]


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


class ServiceSpec(WorkloadSpec):
    workload: Literal["cpu", "io", "memory"]
    prefetch: int


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

    def arithmetic(self) -> str:
        terms = " + ".join(f"{ln.client} {ln.max_instances} x {ln.pool_max}" for ln in self.lines) or "no clients"
        return (
            f"{terms} = {self.total} connections; {self.limit_percent}% of max_connections "
            f"{self.max_connections} = {self.usable:g}"
        )


class KubernetesSpec(Frozen):
    namespace: str
    kubeconfig: str | None
    context: str | None
    install_operators: bool
    storage_class: str | None


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
    budget: ConnectionBudget
    warnings: tuple[str, ...]
    # Docker: check the engine before registering anything (infra/preflight.py).
    preflight: bool

    @property
    def workloads(self) -> tuple[WorkloadSpec, ...]:
        return (self.gateway, *self.services)
