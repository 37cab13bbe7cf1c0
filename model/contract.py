"""The environment contract: what every gateway and service instance is told about the platform.

The same names on both targets; only host names differ. Values that carry a credential are
Pulumi secrets; everything else is plain so that a preview shows it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi

from model.spec import GatewaySpec, PlatformSpec, ServiceSpec, WorkloadSpec

# Names banyan sets; a stack's extra `env` may not redefine them.
RESERVED = frozenset(
    {
        "BANYAN_STACK", "SERVICE_NAME", "PORT",
        "DATABASE_URL", "DATABASE_REPLICA_URLS", "DATABASE_POOL_MIN", "DATABASE_POOL_MAX",
        "DATABASE_POOL_IDLE_TIMEOUT_MS",
        "RABBITMQ_URL", "RABBITMQ_URLS", "RABBITMQ_PREFETCH", "RABBITMQ_DEFAULT_QUEUE_TYPE",
        "REDIS_MODE", "REDIS_NODES", "REDIS_URL", "REDIS_USERNAME", "REDIS_PASSWORD",
        "RATE_LIMIT_STORE", "RATE_LIMIT_MAX", "RATE_LIMIT_WINDOW_MS",
        "CIRCUIT_BREAKER_FAILURE_THRESHOLD", "CIRCUIT_BREAKER_SUCCESS_THRESHOLD",
        "CIRCUIT_BREAKER_RECOVERY_TIMEOUT_MS",
    }
)


@dataclass(frozen=True)
class Endpoints:
    """Where the data tier answers, as the apps must address it on the target's network."""

    postgres_primary: str
    postgres_replicas: tuple[str, ...]
    postgres_port: int
    rabbitmq_hosts: tuple[str, ...]
    rabbitmq_port: int
    redis_hosts: tuple[str, ...]
    redis_port: int


@dataclass(frozen=True)
class Credentials:
    postgres_app_password: pulumi.Input[str]
    rabbitmq_user: str
    rabbitmq_password: pulumi.Input[str]
    redis_user: str
    redis_password: pulumi.Input[str]


def _postgres_url(spec: PlatformSpec, host: str, port: int, password: pulumi.Input[str]) -> pulumi.Output[str]:
    pg = spec.postgres
    return pulumi.Output.concat("postgresql://", pg.user, ":", password, "@", host, ":", str(port), "/", pg.database)


def _joined(parts: Sequence[pulumi.Output[str]]) -> pulumi.Output[str]:
    return pulumi.Output.all(*parts).apply(",".join)


@dataclass(frozen=True)
class Urls:
    """Connection strings, each a Pulumi secret (they carry passwords)."""

    database: pulumi.Output[str]
    database_replicas: pulumi.Output[str]
    rabbitmq: pulumi.Output[str]
    rabbitmq_all: pulumi.Output[str]
    redis: pulumi.Output[str]


def urls(spec: PlatformSpec, ep: Endpoints, creds: Credentials) -> Urls:
    primary = _postgres_url(spec, ep.postgres_primary, ep.postgres_port, creds.postgres_app_password)
    replicas = [_postgres_url(spec, h, ep.postgres_port, creds.postgres_app_password) for h in ep.postgres_replicas]
    amqp = [pulumi.Output.concat("amqp://", creds.rabbitmq_user, ":", creds.rabbitmq_password, "@", h, ":",
                                 str(ep.rabbitmq_port), "/") for h in ep.rabbitmq_hosts]
    return Urls(
        database=pulumi.Output.secret(primary),
        # Reads always have somewhere to go: the replicas, or the primary when there are none.
        database_replicas=pulumi.Output.secret(_joined(replicas or [primary])),
        rabbitmq=pulumi.Output.secret(amqp[0]),
        rabbitmq_all=pulumi.Output.secret(_joined(amqp)),
        redis=pulumi.Output.secret(pulumi.Output.concat(
            "redis://", creds.redis_user, ":", creds.redis_password, "@", ep.redis_hosts[0], ":",
            str(ep.redis_port))),
    )


def app_env(spec: PlatformSpec, workload: WorkloadSpec, ep: Endpoints,
            creds: Credentials) -> dict[str, pulumi.Input[str]]:
    """Every variable one instance of `workload` gets, secrets wrapped as Pulumi secrets."""
    env: dict[str, pulumi.Input[str]] = {
        "BANYAN_STACK": spec.stack,
        "SERVICE_NAME": workload.name,
        "PORT": str(workload.port),
    }
    u = urls(spec, ep, creds)
    if workload.database_client:
        env["DATABASE_URL"] = u.database
        env["DATABASE_REPLICA_URLS"] = u.database_replicas
        env["DATABASE_POOL_MIN"] = str(workload.pool.min)
        env["DATABASE_POOL_MAX"] = str(workload.pool.max)
        env["DATABASE_POOL_IDLE_TIMEOUT_MS"] = str(workload.pool.idle_timeout_ms)
    env["RABBITMQ_URL"] = u.rabbitmq
    env["RABBITMQ_URLS"] = u.rabbitmq_all
    env["RABBITMQ_DEFAULT_QUEUE_TYPE"] = spec.rabbitmq.default_queue_type
    if isinstance(workload, ServiceSpec):
        env["RABBITMQ_PREFETCH"] = str(workload.prefetch)
    env["REDIS_MODE"] = spec.redis.mode
    env["REDIS_NODES"] = ",".join(f"{h}:{ep.redis_port}" for h in ep.redis_hosts)
    # An ACL user: clients send AUTH <user> <password> (Redis 6+); the password alone would be tried as `default`.
    env["REDIS_USERNAME"] = creds.redis_user
    env["REDIS_PASSWORD"] = pulumi.Output.secret(creds.redis_password)
    env["REDIS_URL"] = u.redis
    if isinstance(workload, GatewaySpec):
        rl, cb = workload.rate_limit, workload.circuit_breaker
        env |= {
            "RATE_LIMIT_STORE": rl.store,
            "RATE_LIMIT_MAX": str(rl.max),
            "RATE_LIMIT_WINDOW_MS": str(rl.window_ms),
            "CIRCUIT_BREAKER_FAILURE_THRESHOLD": str(cb.failure_threshold),
            "CIRCUIT_BREAKER_SUCCESS_THRESHOLD": str(cb.success_threshold),
            "CIRCUIT_BREAKER_RECOVERY_TIMEOUT_MS": str(cb.recovery_timeout_ms),
        }
    extra: Mapping[str, str] = dict(workload.env)
    for key, value in extra.items():
        env[key] = pulumi.Output.secret(value) if workload.env_secret else value
    return env
