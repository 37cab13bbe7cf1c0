"""Typed stack configuration: the `banyan:*` keys of a Pulumi stack file, validated with pydantic."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from infra.errors import ConfigProblem

NAMESPACE = "banyan"

Target = Literal["docker", "kubernetes"]
TierName = Literal["small", "medium", "large"]
WorkloadKind = Literal["cpu", "io", "memory"]

# A DNS-1123 label: container, host and Kubernetes object names are all built from it.
DNS_LABEL = r"^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$"
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


def _check_image(ref: str) -> str:
    """An image must name a fixed version: a tag other than `latest`, and optionally a digest."""
    without_digest = _DIGEST.sub("", ref)
    if not without_digest or any(c.isspace() for c in ref):
        raise ValueError("must be an image reference such as 'postgres:16.9-alpine'")
    last = without_digest.rsplit("/", 1)[-1]
    if ":" not in last:
        raise ValueError("must be pinned to a tag (e.g. 'redis:7.4.2-alpine'); an untagged image means 'latest'")
    tag = last.split(":", 1)[1]
    if not tag or tag == "latest":
        raise ValueError("must be pinned to a version tag, not 'latest'")
    return ref


Image = Annotated[str, AfterValidator(_check_image)]
Name = Annotated[str, StringConstraints(pattern=DNS_LABEL)]
Port = Annotated[int, Field(ge=1, le=65535)]
Count = Annotated[int, Field(ge=1, le=500)]
Millis = Annotated[int, Field(ge=10, le=256_000)]
MiB = Annotated[int, Field(ge=16, le=1_048_576)]


class Model(BaseModel):
    """Every config object: unknown keys are an error, values are not silently coerced across types."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class Amount(Model):
    cpu_millis: Millis | None = None
    memory_mib: MiB | None = None


class ResourcesOverride(Model):
    """Overrides of the tier's per-instance limits and requests (reservations on Docker)."""

    limits: Amount = Amount()
    requests: Amount = Amount()


class AutoscalingOverride(Model):
    """Overrides of the tier's HorizontalPodAutoscaler bounds (Kubernetes only)."""

    min_replicas: Count | None = None
    max_replicas: Count | None = None
    cpu_percent: Annotated[int, Field(ge=1, le=100)] | None = None
    memory_percent: Annotated[int, Field(ge=1, le=100)] | None = None


class PoolOverride(Model):
    """Database connection pool of each instance (the guide: min 2, max 10, idle 30 s)."""

    min: Annotated[int, Field(ge=0, le=1000)] | None = None
    max: Annotated[int, Field(ge=1, le=1000)] | None = None
    idle_timeout_ms: Annotated[int, Field(ge=1000, le=3_600_000)] | None = None


class Workload(Model):
    """What the gateway and every business service share."""

    image: Image
    command: tuple[str, ...] | None = None
    instances: Count | None = None
    health_path: Annotated[str, StringConstraints(pattern=r"^/[^\s]*$")] = "/health"
    env: dict[Annotated[str, StringConstraints(pattern=ENV_NAME)], str] = {}
    resources: ResourcesOverride = ResourcesOverride()
    autoscaling: AutoscalingOverride = AutoscalingOverride()
    pool: PoolOverride = PoolOverride()
    database_client: bool = True


class ServiceConfig(Workload):
    name: Name
    port: Port = 3000
    workload: WorkloadKind = "io"
    prefetch: Annotated[int, Field(ge=1, le=1000)] | None = None


class RateLimitConfig(Model):
    store: Literal["redis", "memory"] = "redis"
    max: Annotated[int, Field(ge=1)] = 100
    window_ms: Annotated[int, Field(ge=1000)] = 60_000


class CircuitBreakerConfig(Model):
    failure_threshold: Annotated[int, Field(ge=1)] = 5
    success_threshold: Annotated[int, Field(ge=1)] = 2
    recovery_timeout_ms: Annotated[int, Field(ge=100)] = 30_000


class GatewayConfig(Workload):
    port: Port = 3003
    # The guide's example measures one gateway instance at 1000 req/s.
    capacity_rps: Annotated[int, Field(ge=1)] = 1000
    expected_peak_rps: Annotated[int, Field(ge=1)] | None = None
    headroom: Annotated[float, Field(ge=1.0, le=10.0)] = 2.0
    rate_limit: RateLimitConfig = RateLimitConfig()
    circuit_breaker: CircuitBreakerConfig = CircuitBreakerConfig()
    # The gateway talks to services over the bus; it needs a pool only if told so.
    database_client: bool = False


class PostgresConfig(Model):
    image: Image = "postgres:16.9-alpine"
    # Major version of the server in `image`: renderers emit only settings that version reads.
    version: Annotated[int, Field(ge=13, le=18)] = 16
    replicas: Annotated[int, Field(ge=0, le=15)] | None = None
    max_connections: Annotated[int, Field(ge=10, le=10_000)] | None = None
    database: Name = "banyan"
    user: Name = "banyan"
    storage_gib: Annotated[int, Field(ge=1, le=65_536)] | None = None
    pool: PoolOverride = PoolOverride()
    resources: ResourcesOverride = ResourcesOverride()


class RabbitMQConfig(Model):
    image: Image = "rabbitmq:3.13.7-management-alpine"
    # "major.minor" of the server in `image`: quorum-by-default needs 3.13 or later.
    version: Annotated[str, StringConstraints(pattern=r"^\d+\.\d+$")] = "3.13"
    nodes: Count | None = None
    persistence: bool = True
    allow_even_nodes: bool = False
    default_queue_type: Literal["quorum", "classic"] = "quorum"
    # Dev only: publish the management UI on the host's loopback at this port.
    management_host_port: Port | None = None
    storage_gib: Annotated[int, Field(ge=1, le=65_536)] | None = None
    resources: ResourcesOverride = ResourcesOverride()


class RedisConfig(Model):
    image: Image = "redis:7.4.2-alpine"
    version: Annotated[str, StringConstraints(pattern=r"^\d+\.\d+$")] = "7.4"
    nodes: Count | None = None
    replicas_per_master: Annotated[int, Field(ge=0, le=5)] | None = None
    persistence: bool = True
    storage_gib: Annotated[int, Field(ge=1, le=65_536)] | None = None
    resources: ResourcesOverride = ResourcesOverride()


class NginxConfig(Model):
    image: Image = "nginx:1.27.3-alpine"
    # Host port the load balancer publishes (Docker) or the Service port (Kubernetes).
    port: Port = 8080
    instances: Count | None = None
    keepalive_connections: Annotated[int, Field(ge=1, le=10_000)] = 64
    connect_timeout_s: Annotated[int, Field(ge=1, le=300)] = 5
    read_timeout_s: Annotated[int, Field(ge=1, le=3600)] = 60
    service_type: Literal["LoadBalancer", "NodePort", "ClusterIP"] = "LoadBalancer"
    resources: ResourcesOverride = ResourcesOverride()


class KubernetesConfig(Model):
    namespace: Name = "banyan"
    kubeconfig: str | None = None
    context: str | None = None
    install_operators: bool = True
    storage_class: str | None = None


class StackConfig(Model):
    """The whole `banyan:*` namespace of a stack file."""

    target: Target
    tier: TierName
    protect: bool = False
    services: Annotated[tuple[ServiceConfig, ...], Field(min_length=1)]
    gateway: GatewayConfig
    postgres: PostgresConfig = PostgresConfig()
    rabbitmq: RabbitMQConfig = RabbitMQConfig()
    redis: RedisConfig = RedisConfig()
    nginx: NginxConfig = NginxConfig()
    kubernetes: KubernetesConfig = KubernetesConfig()

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
