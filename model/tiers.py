"""Tier presets from the guide's resource planning table, and resolving tier + overrides into one PlatformSpec.

Where each number comes from:
- Instance and node counts: the guide's "Resource Planning" table, value for value. Where the table
  says "10+", "20+" or "5+", the preset takes the lower bound; "Cluster" for PostgreSQL at the large
  tier is read as 1 primary + 3 replicas (an HA cluster that survives losing the primary and still
  serves reads from two replicas); a "6+ node cluster" for Redis is 3 masters with 1 replica each.
- Gateway and service limits (2 CPU / 2 GiB) and reservations (1 CPU / 1 GiB) at medium and large:
  the guide's Docker Swarm example. Small halves them so the whole small tier fits one dev host
  (2 gateways + 3 instances per service).
- PostgreSQL, RabbitMQ, Redis and Nginx: the guide gives no numbers; these are our sizing. Stateful
  parts request the memory they are limited to (Kubernetes QoS "Guaranteed" memory: the data tier is
  never the first to be evicted).
- Autoscaler bounds: the minimum is the tier's count; the maximum is the next tier's count (the load
  at which the guide would move up a tier), and twice the count at the large tier (the guide's 2x
  headroom). Targets 70 % CPU and 80 % memory: the guide's HorizontalPodAutoscaler example.
- Prefetch by workload kind: the lower end of the guide's ranges (CPU-bound 1-2, I/O-bound 10-20,
  memory-bound 1-5); pool max is the upper end of the range, capped at the guide's pool max 10: a
  handler holds at most one connection per in-flight message, so a larger pool only idles against
  the connection budget. Pool min 2 and idle 30 s: the guide's pool example.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal, TypedDict, TypeVar

from model import backup as backups
from model import capacity, checks
from model.config import (
    AutoscalingOverride,
    PoolOverride,
    PostgresConfig,
    ResourcesOverride,
    ServiceConfig,
    StackConfig,
    Workload,
    bounds,
)
from model.contract import RESERVED as RESERVED_ENV
from model.errors import ConfigProblem
from model.images import parse_image
from model.readback import docker_cpus, docker_cpus_round_trip, nearest_round_trip_cpus
from model.spec import (
    AutoscalingSpec,
    BudgetLine,
    CircuitBreakerSpec,
    ConnectionBudget,
    GatewaySpec,
    KubernetesSpec,
    NginxSpec,
    PlatformSpec,
    PoolSpec,
    PostgresSpec,
    QueueScalingSpec,
    RabbitMQSpec,
    RateLimitSpec,
    RedisSpec,
    Resources,
    ResourceSpec,
    ServiceSpec,
    SwarmSpec,
)
from model.thresholds import monitoring_hosts, monitoring_spec

Part = Literal["gateway", "service", "postgres", "rabbitmq", "redis", "nginx"]
Kind = Literal["cpu", "io", "memory"]


def _r(cpu_millis: int, memory_mib: int) -> Resources:
    return Resources(cpu_millis=cpu_millis, memory_mib=memory_mib)


def _rs(limits: Resources, requests: Resources) -> ResourceSpec:
    return ResourceSpec(limits=limits, requests=requests)


@dataclass(frozen=True)
class TierPreset:
    gateway_instances: int
    service_instances: int
    postgres_replicas: int
    rabbitmq_nodes: int
    redis_nodes: int
    redis_replicas_per_master: int
    nginx_instances: int
    gateway_max: int
    service_max: int
    resources: Mapping[Part, ResourceSpec]
    storage_gib: Mapping[Literal["postgres", "rabbitmq", "redis"], int]


_GUIDE_APP = _rs(_r(2000, 2048), _r(1000, 1024))  # the guide's Swarm example
_SMALL_APP = _rs(_r(1000, 1024), _r(500, 512))

TIERS: Mapping[str, TierPreset] = MappingProxyType(
    {
        "small": TierPreset(
            gateway_instances=2,
            service_instances=3,
            postgres_replicas=0,
            rabbitmq_nodes=1,
            redis_nodes=1,
            redis_replicas_per_master=0,
            nginx_instances=1,
            gateway_max=5,
            service_max=10,
            resources=MappingProxyType(
                {
                    "gateway": _SMALL_APP,
                    "service": _SMALL_APP,
                    "postgres": _rs(_r(1000, 1024), _r(500, 1024)),
                    "rabbitmq": _rs(_r(1000, 1024), _r(250, 1024)),
                    "redis": _rs(_r(500, 512), _r(100, 512)),
                    "nginx": _rs(_r(500, 256), _r(100, 128)),
                }
            ),
            storage_gib=MappingProxyType({"postgres": 10, "rabbitmq": 5, "redis": 2}),
        ),
        "medium": TierPreset(
            gateway_instances=5,
            service_instances=10,
            postgres_replicas=2,
            rabbitmq_nodes=3,
            redis_nodes=3,
            redis_replicas_per_master=0,
            nginx_instances=2,
            gateway_max=10,
            service_max=20,
            resources=MappingProxyType(
                {
                    "gateway": _GUIDE_APP,
                    "service": _GUIDE_APP,
                    "postgres": _rs(_r(2000, 4096), _r(1000, 4096)),
                    "rabbitmq": _rs(_r(2000, 2048), _r(500, 2048)),
                    "redis": _rs(_r(1000, 1024), _r(250, 1024)),
                    "nginx": _rs(_r(1000, 512), _r(250, 256)),
                }
            ),
            storage_gib=MappingProxyType({"postgres": 50, "rabbitmq": 20, "redis": 5}),
        ),
        "large": TierPreset(
            gateway_instances=10,
            service_instances=20,
            postgres_replicas=3,
            rabbitmq_nodes=5,
            redis_nodes=6,
            redis_replicas_per_master=1,
            nginx_instances=3,
            gateway_max=20,
            service_max=40,
            resources=MappingProxyType(
                {
                    "gateway": _GUIDE_APP,
                    "service": _GUIDE_APP,
                    "postgres": _rs(_r(4000, 8192), _r(2000, 8192)),
                    "rabbitmq": _rs(_r(2000, 4096), _r(1000, 4096)),
                    "redis": _rs(_r(2000, 2048), _r(500, 2048)),
                    "nginx": _rs(_r(2000, 1024), _r(500, 512)),
                }
            ),
            storage_gib=MappingProxyType({"postgres": 200, "rabbitmq": 50, "redis": 10}),
        ),
    }
)

HPA_CPU_PERCENT = 70
HPA_MEMORY_PERCENT = 80

# The guide's prefetch guidelines, as (low, high) per workload kind.
PREFETCH_RANGE: Mapping[Kind, tuple[int, int]] = MappingProxyType({"cpu": (1, 2), "io": (10, 20), "memory": (1, 5)})
GUIDE_POOL_MAX = 10
POOL = MappingProxyType(
    {kind: PoolSpec(min=min(2, high, GUIDE_POOL_MAX), max=min(high, GUIDE_POOL_MAX), idle_timeout_ms=30_000)
     for kind, (_, high) in PREFETCH_RANGE.items()}
)
# The gateway has no prefetch; when it is a database client it gets the guide's pool as written.
GATEWAY_POOL = PoolSpec(min=2, max=GUIDE_POOL_MAX, idle_timeout_ms=30_000)

PORTS = MappingProxyType({"postgres": 5432, "rabbitmq": 5672, "rabbitmq_management": 15672,
                          "redis": 6379, "nginx": 80})
# Nginx's container port on Kubernetes: it runs as a non-root user there (Pod Security "restricted") and,
# with every capability dropped, cannot bind a port below 1024. Its Service still serves the public port.
NGINX_UNPRIVILEGED_PORT = 8080

T = TypeVar("T")


def _pick(override: T | None, default: T) -> T:
    return default if override is None else override


class _WorkloadFields(TypedDict):
    """What the gateway and every service resolve alike (WorkloadSpec's fields), typed for the splat."""

    name: str
    image: str
    command: tuple[str, ...] | None
    port: int
    instances: int
    autoscaling: AutoscalingSpec
    resources: ResourceSpec
    health_path: str
    liveness_path: str | None
    env: tuple[tuple[str, str], ...]
    env_secret: bool
    database_client: bool
    pool: PoolSpec


class _Resolver:
    """Collects problems while resolving, so the user sees every one of them at once."""

    def __init__(self, config: StackConfig, project: str, stack: str, secret_keys: frozenset[str]) -> None:
        self.config = config
        self.project = project
        self.stack = stack
        self.secret_keys = secret_keys
        self.preset = TIERS[config.tier]
        self.problems: list[ConfigProblem] = []
        self.warnings: list[str] = []

    def problem(self, key: str, value: object, allowed: str) -> None:
        self.problems.append(ConfigProblem(f"banyan:{key}", value, allowed))

    def resources(self, key: str, part: Part, override: ResourcesOverride) -> ResourceSpec:
        base = self.preset.resources[part]
        limits = Resources(
            cpu_millis=_pick(override.limits.cpu_millis, base.limits.cpu_millis),
            memory_mib=_pick(override.limits.memory_mib, base.limits.memory_mib),
        )
        requests = Resources(
            cpu_millis=_pick(override.requests.cpu_millis, min(base.requests.cpu_millis, limits.cpu_millis)),
            memory_mib=_pick(override.requests.memory_mib, min(base.requests.memory_mib, limits.memory_mib)),
        )
        if self.config.target == "docker" and not docker_cpus_round_trip(limits.cpu_millis):
            near = " or ".join(str(m) for m in nearest_round_trip_cpus(limits.cpu_millis))
            self.problem(f"{key}.resources.limits.cpu_millis", limits.cpu_millis,
                         f"Docker would report this limit back as {docker_cpus(limits.cpu_millis)} CPUs, so every "
                         f"`pulumi up` would replace the container; allowed: a limit that round-trips, such as {near}")
        for field in ("cpu_millis", "memory_mib"):
            req, lim = getattr(requests, field), getattr(limits, field)
            if req > lim:
                self.problem(f"{key}.resources.requests.{field}", req,
                             f"allowed: at most the limit ({lim}); a request above its limit cannot be scheduled")
        return ResourceSpec(limits=limits, requests=requests)

    def autoscaling(self, key: str, instances: int, tier_max: int, override: AutoscalingOverride) -> AutoscalingSpec:
        low = _pick(override.min_replicas, instances)
        high = _pick(override.max_replicas, max(tier_max, low))
        if low > high:
            self.problem(f"{key}.autoscaling.min_replicas", low,
                         f"allowed: at most autoscaling.max_replicas ({high})")
        return AutoscalingSpec(
            enabled=self.config.target == "kubernetes",
            min_replicas=low,
            max_replicas=high,
            cpu_percent=_pick(override.cpu_percent, HPA_CPU_PERCENT),
            memory_percent=_pick(override.memory_percent, HPA_MEMORY_PERCENT),
        )

    def pool(self, key: str, base: PoolSpec, override: PoolOverride) -> PoolSpec:
        pool = PoolSpec(
            min=_pick(override.min, min(base.min, _pick(override.max, base.max))),
            max=_pick(override.max, base.max),
            idle_timeout_ms=_pick(override.idle_timeout_ms, base.idle_timeout_ms),
        )
        if pool.min > pool.max:
            self.problem(f"{key}.pool.min", pool.min, f"allowed: at most pool.max ({pool.max})")
        return pool

    def _workload_fields(self, key: str, part: Part, cfg: Workload, name: str, port: int,
                         instances: int, tier_max: int, pool: PoolSpec) -> _WorkloadFields:
        top = key.split("[", 1)[0].split(".", 1)[0]
        low = cfg.autoscaling.min_replicas
        if self.config.target == "kubernetes" and cfg.instances is not None and low not in (None, cfg.instances):
            self.problem(f"{key}.autoscaling.min_replicas", low,
                         f"banyan:{key}.instances ({cfg.instances}) decides the same thing on Kubernetes (the "
                         "autoscaler's minimum); allowed: one of the two, or the same number in both")
        for env_name in sorted(set(cfg.env) & RESERVED_ENV):
            self.problem(f"{key}.env.{env_name}", cfg.env[env_name],
                         "this variable is set by banyan (README, \"Environment contract\"); choose another name")
        return _WorkloadFields(
            name=name,
            image=cfg.image,
            command=cfg.command,
            port=port,
            instances=instances,
            autoscaling=self.autoscaling(key, instances, tier_max, cfg.autoscaling),
            resources=self.resources(key, part, cfg.resources),
            health_path=cfg.health_path,
            liveness_path=cfg.liveness_path,
            env=tuple(sorted(cfg.env.items())),
            env_secret=f"banyan:{top}" in self.secret_keys,
            database_client=cfg.database_client,
            pool=self.pool(key, pool, cfg.pool),
        )

    def gateway(self) -> GatewaySpec:
        cfg = self.config.gateway
        instances = _pick(cfg.instances, self.preset.gateway_instances)
        if cfg.expected_peak_rps is not None:
            peak, each, headroom = cfg.expected_peak_rps, cfg.capacity_rps, cfg.headroom
            needed = capacity.instances_for_load(peak, each, headroom)
            arithmetic = capacity.load_arithmetic(peak, each, headroom)
            _, most = bounds(Workload, "instances")
            if cfg.instances is not None:
                self.problem("gateway.instances", cfg.instances,
                             f"banyan:gateway.expected_peak_rps ({peak}) decides the gateway count too ({arithmetic}); "
                             "allowed: one of the two")
            elif needed > most:
                self.problem("gateway.expected_peak_rps", peak,
                             f"{arithmetic}, above the instance limit; allowed: at most {most} instances, so at most "
                             f"{capacity.max_peak_for(most, each, headroom)} req/s at this capacity_rps and headroom "
                             "(or a larger capacity_rps per instance)")
                instances = most
            else:
                instances = needed
        return GatewaySpec(
            **self._workload_fields("gateway", "gateway", cfg, "api-gateway", cfg.port, instances,
                                    self.preset.gateway_max, GATEWAY_POOL),
            capacity_rps=cfg.capacity_rps,
            rate_limit=RateLimitSpec(**cfg.rate_limit.model_dump()),
            circuit_breaker=CircuitBreakerSpec(**cfg.circuit_breaker.model_dump()),
        )

    def service(self, index: int, cfg: ServiceConfig) -> ServiceSpec:
        key = f"services[{index}]"
        low, high = PREFETCH_RANGE[cfg.workload]
        prefetch = _pick(cfg.prefetch, low)
        if not low <= prefetch <= high:
            self.warnings.append(
                f"banyan:{key}.prefetch {prefetch} is outside the guide's {low}-{high} "
                f"for {cfg.workload}-bound handlers"
            )
        instances = _pick(cfg.instances, self.preset.service_instances)
        fields = self._workload_fields(key, "service", cfg, cfg.name, cfg.port, instances,
                                       self.preset.service_max, POOL[cfg.workload])
        return ServiceSpec(**fields, workload=cfg.workload, prefetch=prefetch,
                           queue_depth=cfg.queue_scaling.queue_depth,
                           queue_scaling=self.queue_scaling(key, cfg, prefetch, fields["autoscaling"]))

    def queue_scaling(self, key: str, cfg: ServiceConfig, prefetch: int,
                      bounds_: AutoscalingSpec) -> QueueScalingSpec | None:
        """KEDA's ScaledObject for the service (Kubernetes only: Docker has no autoscaler, the plan advises)."""
        qs = cfg.queue_scaling
        if not qs.enabled or self.config.target != "kubernetes":
            return None
        fallback = _pick(qs.fallback_replicas, bounds_.min_replicas)
        if not bounds_.min_replicas <= fallback <= bounds_.max_replicas:
            self.problem(f"{key}.queue_scaling.fallback_replicas", fallback,
                         f"allowed: between the autoscaler's min_replicas ({bounds_.min_replicas}) and max_replicas "
                         f"({bounds_.max_replicas})")
        return QueueScalingSpec(
            queues=qs.queues or (),
            pattern=None if qs.queues else _pick(qs.pattern, default_queue_pattern(cfg.name)),
            per_instance=capacity.decimal_text(
                capacity.queue_target_per_instance(prefetch, bounds_.max_replicas, qs.queue_depth)),
            fallback_replicas=fallback,
        )


    def postgres(self, workloads: tuple[GatewaySpec | ServiceSpec, ...]) -> tuple[ConnectionBudget, PostgresSpec]:
        """The server and the connection budget every database client's pool is counted in."""
        pg_cfg, p = self.config.postgres, self.preset
        lines = [BudgetLine(client=w.name, max_instances=w.max_instances, pool_max=w.pool.max)
                 for w in workloads if w.database_client]
        budget, derived = capacity.connection_budget(lines, pg_cfg.max_connections)
        _, most = bounds(PostgresConfig, "max_connections")
        if derived and budget.max_connections > most:
            self.problem("postgres.max_connections", budget.max_connections,
                         capacity.derived_beyond_limit(budget, most))
        shortfall = capacity.budget_shortfall(budget, most)
        if shortfall:
            self.problem("postgres.max_connections", pg_cfg.max_connections, shortfall)
        _check_postgres_image(self, pg_cfg.image, pg_cfg.version)
        replicas = _pick(pg_cfg.replicas, p.postgres_replicas)
        pg_res = self.resources("postgres", "postgres", pg_cfg.resources)
        memory = _postgres_memory(pg_res.limits.memory_mib, budget.max_connections)
        storage_gib = _pick(pg_cfg.storage_gib, p.storage_gib["postgres"])
        backup, restore, backup_problems = backups.resolve(self.config, name="postgres", storage_gib=storage_gib,
                                                           secret_keys=self.secret_keys)
        self.problems += backup_problems
        return budget, PostgresSpec(
            name="postgres",
            image=pg_cfg.image,
            version=pg_cfg.version,
            port=PORTS["postgres"],
            replicas=replicas,
            max_connections=budget.max_connections,
            max_connections_derived=derived,
            database=pg_cfg.database,
            user=pg_cfg.user,
            replication_user="replicator",
            storage_gib=storage_gib,
            resources=pg_res,
            # A replica bootstrapping with `pg_basebackup -X stream` holds two senders, one once streaming;
            # replicas may bootstrap together, and two spare senders leave room for a manual re-seed.
            max_wal_senders=max(10, 2 * replicas + 2),
            max_replication_slots=replicas + 2,
            shared_buffers_mib=memory.shared_buffers_mib,
            effective_cache_size_mib=memory.effective_cache_size_mib,
            maintenance_work_mem_mib=memory.maintenance_work_mem_mib,
            work_mem_kib=memory.work_mem_kib,
            backup=backup,
            restore=restore,
        )

    def rabbitmq(self) -> RabbitMQSpec:
        mq_cfg, target = self.config.rabbitmq, self.config.target
        nodes = _pick(mq_cfg.nodes, self.preset.rabbitmq_nodes)
        quorum_supported = tuple(int(x) for x in mq_cfg.version.split(".")) >= (3, 13)
        queue_type = mq_cfg.default_queue_type
        if queue_type == "quorum" and not quorum_supported:
            self.warnings.append(
                f"banyan:rabbitmq.version {mq_cfg.version} cannot make quorum the default queue type "
                "(needs 3.13+); clients must declare x-queue-type: quorum themselves"
            )
            queue_type = "classic"
        shape_error = capacity.rabbitmq_shape_error(nodes, mq_cfg.default_queue_type == "quorum",
                                                    mq_cfg.allow_even_nodes)
        if shape_error:
            self.problem("rabbitmq.nodes", nodes, shape_error)
        mq_res = self.resources("rabbitmq", "rabbitmq", mq_cfg.resources)
        return RabbitMQSpec(
            name="rabbitmq",
            image=mq_cfg.image,
            version=mq_cfg.version,
            nodes=nodes,
            port=PORTS["rabbitmq"],
            management_port=PORTS["rabbitmq_management"],
            management_host_port=mq_cfg.management_host_port if target == "docker" else None,
            persistence=mq_cfg.persistence,
            default_queue_type=queue_type,
            storage_gib=_pick(mq_cfg.storage_gib, self.preset.storage_gib["rabbitmq"]),
            resources=mq_res,
            # RabbitMQ blocks publishers at this mark; 40 % of the limit is its own default ratio.
            memory_high_watermark_mib=max(64, mq_res.limits.memory_mib * 2 // 5),
        )

    def redis(self) -> RedisSpec:
        rd_cfg, p = self.config.redis, self.preset
        rd_nodes = _pick(rd_cfg.nodes, p.redis_nodes)
        rd_replicas = _pick(rd_cfg.replicas_per_master, p.redis_replicas_per_master)
        shape = capacity.redis_shape(rd_nodes, rd_replicas)
        if isinstance(shape, str):
            if rd_cfg.nodes is not None or rd_cfg.replicas_per_master is None:
                self.problem("redis.nodes", rd_nodes, shape)
            else:
                self.problem("redis.replicas_per_master", rd_replicas, shape)
            shape = capacity.RedisShape("standalone", 1, 0)
        rd_res = self.resources("redis", "redis", rd_cfg.resources)
        return RedisSpec(
            name="redis",
            image=rd_cfg.image,
            version=rd_cfg.version,
            nodes=rd_nodes,
            mode=shape.mode,
            masters=shape.masters,
            replicas_per_master=shape.replicas_per_master,
            port=PORTS["redis"],
            bus_port=PORTS["redis"] + 10_000,
            persistence=rd_cfg.persistence,
            storage_gib=_pick(rd_cfg.storage_gib, p.storage_gib["redis"]),
            resources=rd_res,
            # Leave a quarter of the limit for fork copy-on-write during persistence and client buffers.
            maxmemory_mib=max(16, rd_res.limits.memory_mib * 3 // 4),
        )

    def nginx(self) -> NginxSpec:
        ng_cfg = self.config.nginx
        ng_instances = _pick(ng_cfg.instances, self.preset.nginx_instances)
        if self.config.target == "docker" and not ipaddress.ip_address(ng_cfg.publish_address).is_loopback:
            self.warnings.append(
                f"banyan:nginx.publish_address {ng_cfg.publish_address} publishes the platform beyond this host "
                f"on port {ng_cfg.port}, over plain HTTP; Docker's NAT rules bypass host firewalls (ufw, "
                "firewalld), so anyone who reaches the address reaches the gateways")
        if self.config.target == "docker":
            if ng_cfg.instances is not None and ng_cfg.instances > 1:
                self.problem("nginx.instances", ng_cfg.instances,
                             "allowed: 1 on target docker (one host port can be published once)")
            ng_instances = 1
        return NginxSpec(
            name="nginx",
            image=ng_cfg.image,
            public_port=ng_cfg.port,
            publish_address=ng_cfg.publish_address,
            # Docker and Swarm run the official image as it is (a root master binds port 80).
            listen_port=PORTS["nginx"] if self.config.target in ("docker", "swarm") else NGINX_UNPRIVILEGED_PORT,
            instances=ng_instances,
            keepalive_connections=ng_cfg.keepalive_connections,
            connect_timeout_s=ng_cfg.connect_timeout_s,
            read_timeout_s=ng_cfg.read_timeout_s,
            service_type=ng_cfg.service_type,
            resources=self.resources("nginx", "nginx", ng_cfg.resources),
        )

@dataclass(frozen=True)
class _PostgresMemory:
    shared_buffers_mib: int
    effective_cache_size_mib: int
    maintenance_work_mem_mib: int
    work_mem_kib: int


def default_queue_pattern(service: str) -> str:
    """The guide's queue names, `service.<service>.commands.<Command>` (Competing Consumers), as a regex."""
    return rf"^service\.{service}\.commands\."


def _postgres_memory(memory_mib: int, max_connections: int) -> _PostgresMemory:
    """The usual starting points: 25 % shared_buffers, 75 % effective cache, 5 % maintenance,
    and work_mem such that every connection can use one sort buffer within the rest."""
    shared = max(32, memory_mib // 4)
    spare_kib = max(0, memory_mib - shared) * 1024 // 2
    return _PostgresMemory(
        shared_buffers_mib=shared,
        effective_cache_size_mib=max(64, memory_mib * 3 // 4),
        maintenance_work_mem_mib=max(16, memory_mib // 20),
        work_mem_kib=max(64, min(65_536, spare_kib // max(1, max_connections))),
    )


def resolve(config: StackConfig, *, project: str, stack: str,
            secret_keys: frozenset[str] = frozenset()) -> tuple[PlatformSpec | None, list[ConfigProblem]]:
    """Tier preset + stack overrides -> one frozen PlatformSpec, or every problem found."""
    r = _Resolver(config, project, stack, secret_keys)
    gateway = r.gateway()
    services = tuple(r.service(i, svc) for i, svc in enumerate(config.services))

    budget, postgres = r.postgres((gateway, *services))
    rabbitmq, redis, nginx = r.rabbitmq(), r.redis(), r.nginx()

    _check_unique_names(r, gateway, services, postgres, rabbitmq, redis, nginx)
    if config.require_digests:
        _check_digests(r, config)
    k8s, monitoring = config.kubernetes, config.monitoring
    spec = PlatformSpec(
        project=project,
        stack=stack,
        target=config.target,
        tier=config.tier,
        protect=config.protect,
        gateway=gateway,
        services=services,
        postgres=postgres,
        rabbitmq=rabbitmq,
        redis=redis,
        nginx=nginx,
        kubernetes=KubernetesSpec(
            namespace=k8s.namespace,
            kubeconfig=k8s.kubeconfig,
            context=k8s.context,
            install_operators=k8s.install_operators,
            storage_class=k8s.storage_class,
            cluster_domain=k8s.cluster_domain,
            dns_service=k8s.dns_service,
            dns_namespace=k8s.dns_namespace,
            dns_pod_labels=tuple(sorted(k8s.dns_pod_labels.items())),
            api_server_cidrs=k8s.api_server_cidrs,
            install_keda=k8s.install_keda,
            keda_namespace=k8s.keda_namespace,
            keda_operator_labels=tuple(sorted(k8s.keda_operator_labels.items())),
        ),
        monitoring=monitoring_spec(monitoring, budget),
        budget=budget,
        warnings=tuple(r.warnings),
        preflight=config.preflight,
        require_digests=config.require_digests,
        swarm=SwarmSpec(data_placement=config.swarm.data_placement, publish_mode=config.swarm.publish_mode),
    )
    # What only the whole spec shows, per target: collisions, the Docker host's size, ignored settings.
    problems, warnings = checks.whole_spec(config, spec, frozenset(p.key for p in r.problems))
    if r.problems or problems:
        return None, r.problems + problems
    return spec.model_copy(update={"warnings": (*spec.warnings, *warnings)}), []


def _check_digests(r: _Resolver, config: StackConfig) -> None:
    """banyan:require_digests: every image names its bits (`repo:tag@sha256:...`), so no two hosts can run
    different builds under one tag. Defaults count too: the pins table says which carry a digest."""
    images = [("gateway.image", config.gateway.image),
              *((f"services[{i}].image", s.image) for i, s in enumerate(config.services)),
              ("postgres.image", config.postgres.image), ("rabbitmq.image", config.rabbitmq.image),
              ("redis.image", config.redis.image), ("nginx.image", config.nginx.image)]
    for key, ref in images:
        if parse_image(ref).digest is None:
            r.problem(key, ref, "banyan:require_digests is true, so the image must carry its digest: "
                      "`repo:tag@sha256:<digest>` (`docker buildx imagetools inspect <repo:tag>` prints it); "
                      "allowed: a reference with @sha256:, or require_digests false")


def _check_postgres_image(r: _Resolver, image: str, version: int) -> None:
    """The image's major version must be the one the config files are written for; on Kubernetes an
    official image's tag must also name major.minor, which picks the CloudNativePG operand image."""
    ref = parse_image(image)  # the config model accepted it, so it parses
    numbers = ref.version() or ()
    if numbers and numbers[0] != version:
        r.problem("postgres.image", image, f"the tag names PostgreSQL {numbers[0]} but banyan:postgres.version is "
                  f"{version}; allowed: an image of PostgreSQL {version}, or set the version to match")
    elif r.config.target == "kubernetes" and ref.is_docker_official("postgres") and len(numbers) < 2:
        r.problem("postgres.image", image, "on Kubernetes the tag must start with major.minor (e.g. "
                  "postgres:16.9-alpine) to pick the matching CloudNativePG image")


def _check_unique_names(r: _Resolver, gateway: GatewaySpec, services: tuple[ServiceSpec, ...],
                        postgres: PostgresSpec, rabbitmq: RabbitMQSpec, redis: RedisSpec, nginx: NginxSpec) -> None:
    """Every instance is a host name on the platform network; two parts must never share one."""
    owners: dict[str, str] = {}
    # The platform's own parts claim their names first, so a clashing service is the one reported.
    parts: list[tuple[str, str, tuple[str, ...]]] = [
        (part.name, part.name, (*part.instance_names, part.name)) for part in (postgres, rabbitmq, redis)
    ]
    # Redis Cluster's one-shot creation step is a container on the network too (and a tier move makes one).
    parts.append((redis.name, redis.name, (redis.cluster_create_name,)))
    parts.append(("nginx", nginx.name, nginx.instance_names))
    parts.append(("gateway", gateway.name, gateway.instance_names))
    if r.config.monitoring.enabled:
        parts.append(("monitoring.enabled", "true", monitoring_hosts(postgres.instance_names)))
    parts += [(f"services[{i}].name", s.name, (*s.instance_names, s.name)) for i, s in enumerate(services)]
    for key, value, names in parts:
        for host in names:
            other = owners.setdefault(host, key)
            if other != key:
                r.problem(key, value, f"host name {host!r} is already used by banyan:{other}; choose another name")
                break
