"""Typed stack configuration: the `banyan:*` keys of a Pulumi stack file, validated with pydantic."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from model.errors import ConfigProblem
from model.images import parse_image

NAMESPACE = "banyan"

Target = Literal["docker", "kubernetes"]
TierName = Literal["small", "medium", "large"]
WorkloadKind = Literal["cpu", "io", "memory"]

# A DNS-1123 label: container, host and Kubernetes object names are all built from it.
DNS_LABEL = r"^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$"
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


def _check_image(ref: str) -> str:
    """An image must name a fixed version: a tag other than `latest`, and optionally a digest."""
    try:
        image = parse_image(ref)
    except ValueError:
        raise ValueError("must be an image reference such as 'postgres:16.9-alpine'") from None
    if image.tag is None:
        raise ValueError("must be pinned to a tag (e.g. 'redis:7.4.2-alpine'); an untagged image means 'latest'")
    if image.tag.lower() == "latest":
        raise ValueError("must be pinned to a version tag, not 'latest'")
    return ref


Image = Annotated[str, AfterValidator(_check_image)]


def _check_address(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError("must be an IP address of the Docker host, such as 127.0.0.1 or 0.0.0.0") from None
    return value


HostAddress = Annotated[str, AfterValidator(_check_address)]


def _version_text(value: object) -> object:
    if isinstance(value, float | int) and not isinstance(value, bool):
        raise ValueError(f"write the version quoted, as text (YAML reads an unquoted {value} as a number, "
                         "and 3.10 as 3.1); allowed: 'major.minor' such as '3.13'")
    return value


MajorMinor = Annotated[str, BeforeValidator(_version_text), StringConstraints(pattern=r"^\d+\.\d+$")]
Name = Annotated[str, StringConstraints(pattern=DNS_LABEL)]
# PostgreSQL identifiers that need no quoting anywhere (SQL, connection strings, pg_hba.conf).
PgIdent = Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_]{0,62}$")]
Port = Annotated[int, Field(ge=1, le=65535)]
Count = Annotated[int, Field(ge=1, le=500)]
Millis = Annotated[int, Field(ge=10, le=256_000)]
MiB = Annotated[int, Field(ge=16, le=1_048_576)]


class Model(BaseModel):
    """Every config object: unknown keys are an error; each field's docstring is its reference entry."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class Amount(Model):
    """CPU and memory of one instance."""

    cpu_millis: Millis | None = None
    """CPU in thousandths of a core (1000 = one core). Unset: the tier's value."""
    memory_mib: MiB | None = None
    """Memory in MiB. Unset: the tier's value."""


class ResourcesOverride(Model):
    """Overrides of the tier's per-instance limits and requests (reservations on Docker)."""

    limits: Amount = Amount()
    """Hard caps (Docker `--cpus`/`--memory`, Kubernetes limits)."""
    requests: Amount = Amount()
    """What is reserved (Docker CPU shares and memory reservation, Kubernetes requests)."""


class AutoscalingOverride(Model):
    """Overrides of the tier's HorizontalPodAutoscaler (Kubernetes only; Docker has no autoscaler)."""

    min_replicas: Count | None = None
    """Fewest replicas. Unset: the instance count."""
    max_replicas: Count | None = None
    """Most replicas; the connection budget plans for this many. Unset: the next tier's count (large: 2x)."""
    cpu_percent: Annotated[int, Field(ge=1, le=100)] | None = None
    """Target average CPU utilisation. Unset: 70 (the guide)."""
    memory_percent: Annotated[int, Field(ge=1, le=100)] | None = None
    """Target average memory utilisation. Unset: 80 (the guide)."""


class PoolOverride(Model):
    """Database connection pool of each instance."""

    min: Annotated[int, Field(ge=0, le=1000)] | None = None
    """Connections kept open. Unset: 2 (the guide), at most max."""
    max: Annotated[int, Field(ge=1, le=1000)] | None = None
    """Most connections per instance. Unset: by workload kind (cpu 2, io 10, memory 5; gateway 10)."""
    idle_timeout_ms: Annotated[int, Field(ge=1000, le=3_600_000)] | None = None
    """Close idle connections after this long. Unset: 30000 (the guide)."""


class Workload(Model):
    """What the gateway and every business service share."""

    image: Image
    """Container image, pinned to a tag (never `latest`), optionally with `@sha256:` digest."""
    command: tuple[str, ...] | None = None
    """Command overriding the image's (e.g. for the placeholder images)."""
    instances: Count | None = None
    """Instance count (Kubernetes: the autoscaler's minimum). Unset: the tier's count."""
    health_path: Annotated[str, StringConstraints(pattern=r"^/[^\s]*$")] = "/health"
    """HTTP path that answers 2xx when an instance is ready."""
    env: dict[Annotated[str, StringConstraints(pattern=ENV_NAME)], str] = {}
    """Extra environment variables. Mark the key secret (`pulumi config set --secret --path`) for secret values."""
    resources: ResourcesOverride = ResourcesOverride()
    """Per-instance limits and requests; see `resources`."""
    autoscaling: AutoscalingOverride = AutoscalingOverride()
    """Autoscaler bounds; see `autoscaling`."""
    pool: PoolOverride = PoolOverride()
    """Database pool per instance; see `pool`."""
    database_client: bool = True
    """Whether instances open PostgreSQL connections (counted in the connection budget)."""


class ServiceConfig(Workload):
    """One business service (a competing consumer of its RabbitMQ queues)."""

    name: Name
    """Service name, a DNS label; instances are `<name>-1`, `<name>-2`, ..."""
    port: Port = 3000
    """Port the service listens on (health checks and internal HTTP)."""
    workload: WorkloadKind = "io"
    """cpu, io or memory: picks prefetch and pool defaults (the guide's prefetch guidelines)."""
    prefetch: Annotated[int, Field(ge=1, le=1000)] | None = None
    """RabbitMQ prefetch per instance. Unset: cpu 1, io 10, memory 1."""


class RateLimitConfig(Model):
    """The gateway's rate limit, shared across instances."""

    store: Literal["redis", "memory"] = "redis"
    """Where counters live: redis (shared by all instances) or memory (per instance)."""
    max: Annotated[int, Field(ge=1)] = 100
    """Requests allowed per window and client."""
    window_ms: Annotated[int, Field(ge=1000)] = 60_000
    """Window length in milliseconds."""


class CircuitBreakerConfig(Model):
    """The gateway's circuit breaker towards services."""

    failure_threshold: Annotated[int, Field(ge=1)] = 5
    """Failures that open the circuit."""
    success_threshold: Annotated[int, Field(ge=1)] = 2
    """Successes (half-open) that close it again."""
    recovery_timeout_ms: Annotated[int, Field(ge=100)] = 30_000
    """Time open before trying again, in milliseconds."""


class GatewayConfig(Workload):
    """The API gateway behind Nginx."""

    port: Port = 3003
    """Port the gateway listens on (the guide's Nginx upstream uses 3003)."""
    capacity_rps: Annotated[int, Field(ge=1)] = 1000
    """Measured requests/s one instance serves (the guide's example: 1000)."""
    expected_peak_rps: Annotated[int, Field(ge=1)] | None = None
    """Expected peak load; when set, instances = ceil(peak / capacity x headroom)."""
    headroom: Annotated[float, Field(ge=1.0, le=10.0)] = 2.0
    """Multiplier for peaks and failures (the guide: 1.5-2x)."""
    rate_limit: RateLimitConfig = RateLimitConfig()
    """See `gateway.rate_limit`."""
    circuit_breaker: CircuitBreakerConfig = CircuitBreakerConfig()
    """See `gateway.circuit_breaker`."""
    database_client: bool = False
    """Whether gateway instances open PostgreSQL connections (they talk to services over the bus)."""


class PostgresConfig(Model):
    """PostgreSQL: one primary and streaming read replicas."""

    image: Image = "postgres:16.9-alpine"
    """Official postgres image, pinned."""
    version: Annotated[int, Field(ge=13, le=18)] = 16
    """Major version of the server in `image`: config files carry only settings it reads."""
    replicas: Annotated[int, Field(ge=0, le=15)] | None = None
    """Read replicas. Unset: small 0, medium 2, large 3."""
    max_connections: Annotated[int, Field(ge=10, le=10_000)] | None = None
    """Server limit. Unset: derived so every client's pool stays under 80 % of it; too low is an error."""
    database: PgIdent = "banyan"
    """Database the services use."""
    user: PgIdent = "banyan"
    """Role the services log in as (its password is generated)."""
    storage_gib: Annotated[int, Field(ge=1, le=65_536)] | None = None
    """Volume size per instance (Kubernetes). Unset: small 10, medium 50, large 200."""
    resources: ResourcesOverride = ResourcesOverride()
    """Per-instance limits and requests; see `resources`."""


class RabbitMQConfig(Model):
    """RabbitMQ: a cluster of nodes, quorum queues by default."""

    image: Image = "rabbitmq:3.13.7-management-alpine"
    """Official rabbitmq image with the management plugin, pinned."""
    version: MajorMinor = "3.13"
    """`major.minor` of the server in `image`: quorum as the default queue type needs 3.13+."""
    nodes: Count | None = None
    """Cluster nodes. Unset: small 1, medium 3, large 5."""
    persistence: bool = True
    """Keep node data (queues, messages) on a volume per node."""
    allow_even_nodes: bool = False
    """Accept an even node count (no gain in fault tolerance for quorum queues)."""
    default_queue_type: Literal["quorum", "classic"] = "quorum"
    """Queue type for queues declared without one."""
    management_host_port: Port | None = None
    """Docker only: publish node 1's management UI on the host's 127.0.0.1 at this port."""
    storage_gib: Annotated[int, Field(ge=1, le=65_536)] | None = None
    """Volume size per node (Kubernetes). Unset: small 5, medium 20, large 50."""
    resources: ResourcesOverride = ResourcesOverride()
    """Per-node limits and requests; see `resources`."""


class RedisConfig(Model):
    """Redis: a standalone server (1 node) or a Redis Cluster."""

    image: Image = "redis:7.4.2-alpine"
    """Official redis image, pinned."""
    version: MajorMinor = "7.4"
    """`major.minor` of the server in `image`: config files carry only settings it reads."""
    nodes: Count | None = None
    """Nodes: 1 (standalone) or masters x (1 + replicas_per_master) with 3+ masters. Unset: 1, 3, 6."""
    replicas_per_master: Annotated[int, Field(ge=0, le=5)] | None = None
    """Replicas of each master. Unset: small 0, medium 0, large 1."""
    persistence: bool = True
    """Append-only file on the node's volume (data and nodes.conf survive restarts)."""
    storage_gib: Annotated[int, Field(ge=1, le=65_536)] | None = None
    """Volume size per node (Kubernetes). Unset: small 2, medium 5, large 10."""
    resources: ResourcesOverride = ResourcesOverride()
    """Per-node limits and requests; see `resources`."""


class NginxConfig(Model):
    """Nginx, the load balancer in front of the gateway and the platform's only public port."""

    image: Image = "nginx:1.27.3-alpine"
    """Official nginx image, pinned."""
    port: Port = 8080
    """Public port: published on the Docker host, or the Kubernetes Service port."""
    publish_address: HostAddress = "127.0.0.1"
    """Docker only: the host address the public port is published on. 127.0.0.1 keeps the platform on this
    machine; 0.0.0.0 publishes it on every interface, over plain HTTP, past host firewalls (Docker's NAT rules
    bypass ufw and firewalld)."""
    instances: Count | None = None
    """Nginx instances (Docker: always 1). Unset: small 1, medium 2, large 3 on Kubernetes."""
    keepalive_connections: Annotated[int, Field(ge=1, le=10_000)] = 64
    """Idle keep-alive connections to the gateways, per Nginx worker."""
    connect_timeout_s: Annotated[int, Field(ge=1, le=300)] = 5
    """Seconds to connect to a gateway before trying the next."""
    read_timeout_s: Annotated[int, Field(ge=1, le=3600)] = 60
    """Seconds between two reads from a gateway."""
    service_type: Literal["LoadBalancer", "NodePort", "ClusterIP"] = "LoadBalancer"
    """Kubernetes Service type in front of Nginx."""
    resources: ResourcesOverride = ResourcesOverride()
    """Per-instance limits and requests; see `resources`."""


class KubernetesConfig(Model):
    """Kubernetes target settings."""

    namespace: Name = "banyan"
    """Namespace the stack owns; everything is created in it."""
    kubeconfig: str | None = None
    """Path to a kubeconfig. Unset: the provider's default (KUBECONFIG, ~/.kube/config)."""
    context: str | None = None
    """kubeconfig context. Unset: the current context."""
    install_operators: bool = True
    """Install the CloudNativePG and RabbitMQ operators (Helm, pinned); false where the cluster runs them."""
    storage_class: str | None = None
    """StorageClass for volumes. Unset: the cluster's default."""


class StackConfig(Model):
    """The whole `banyan:*` namespace of a stack file."""

    target: Target
    """docker (one host, pulumi-docker) or kubernetes (pulumi-kubernetes)."""
    tier: TierName
    """small, medium or large: the guide's resource planning table."""
    protect: bool = False
    """Protect stateful resources (volumes, database and broker clusters) from deletion."""
    preflight: bool = True
    ("Docker: before registering anything, read the local engine (the unix socket of docker:host or DOCKER_HOST, else "
     "/var/run/docker.sock) and refuse host ports another container publishes and RabbitMQ/Redis shrinks "
     "the clusters cannot survive. Set false where that engine is not the one the provider deploys to.")
    services: Annotated[tuple[ServiceConfig, ...], Field(min_length=1)]
    """The business services; see `services[]`."""
    gateway: GatewayConfig
    """See `gateway`."""
    postgres: PostgresConfig = PostgresConfig()
    """See `postgres`."""
    rabbitmq: RabbitMQConfig = RabbitMQConfig()
    """See `rabbitmq`."""
    redis: RedisConfig = RedisConfig()
    """See `redis`."""
    nginx: NginxConfig = NginxConfig()
    """See `nginx`."""
    kubernetes: KubernetesConfig = KubernetesConfig()
    """See `kubernetes`."""

    @field_validator("services")
    @classmethod
    def _unique_names(cls, services: tuple[ServiceConfig, ...]) -> tuple[ServiceConfig, ...]:
        seen: set[str] = set()
        for svc in services:
            if svc.name in seen:
                raise ValueError(f"service name {svc.name!r} is used twice; names must be unique")
            seen.add(svc.name)
        return services


def _key_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif path:
            path += f".{part}"
        else:
            path = str(part)
    return f"{NAMESPACE}:{path}"


def _clean_loc(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    # pydantic adds the validator's name (e.g. "function-after[_check_image()]") to locations.
    return tuple(p for p in loc if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))


def _allowed(error: Mapping[str, Any]) -> str:
    ctx = error.get("ctx") or {}
    kind = error["type"]
    if kind == "extra_forbidden":
        return "this key is not known here"
    if kind == "literal_error":
        return f"allowed: {ctx.get('expected')}"
    if kind == "missing":
        return "this key is required"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    return str(error["msg"]).lower()


def _problems(exc: ValidationError, raw: Mapping[str, Any]) -> list[ConfigProblem]:
    problems = []
    for error in exc.errors():
        loc = _clean_loc(tuple(error["loc"]))
        value = error.get("input") if error["type"] != "missing" else None
        problems.append(ConfigProblem(_key_path(loc), value, _allowed(error), missing=error["type"] == "missing"))
    return problems


def decode_raw_config(raw: Mapping[str, Any]) -> tuple[dict[str, Any], list[ConfigProblem]]:
    """Turn Pulumi's flat `banyan:key -> string` map into nested data.

    Structured values (objects and lists) reach the program as JSON strings; scalars stay
    strings and pydantic's lax mode reads "3" and "true" where a number or flag is wanted.
    Keys of other namespaces (`docker:host`, `kubernetes:context`) belong to providers.
    """
    data: dict[str, Any] = {}
    problems: list[ConfigProblem] = []
    prefix = f"{NAMESPACE}:"
    for key, value in raw.items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix):]
        if isinstance(value, str) and value.lstrip()[:1] in ("{", "["):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as err:
                problems.append(ConfigProblem(key, value, f"must be valid structured YAML/JSON ({err.msg})"))
                continue
        data[name] = value
    return data, problems


def parse_config(raw: Mapping[str, Any]) -> tuple[StackConfig | None, list[ConfigProblem]]:
    """Validate a flat Pulumi config map; returns the model or every problem found."""
    data, problems = decode_raw_config(raw)
    if problems:
        return None, problems
    try:
        return StackConfig.model_validate(data), []
    except ValidationError as exc:
        return None, _problems(exc, data)
