"""Credentials the platform generates once and keeps in state (pulumi-random): never defaults, never plain."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_random as random

TYPE = "banyan:index:PlatformSecrets"


@dataclass(frozen=True)
class PostgresPasswords:
    superuser: pulumi.Output[str]
    app: pulumi.Output[str]
    replication: pulumi.Output[str]


@dataclass(frozen=True)
class RabbitMQCredentials:
    """The administrator is for operators (management UI, CLI); the applications log in as `app_user`."""

    admin_user: str
    admin_password: pulumi.Output[str]
    app_user: str
    app_password: pulumi.Output[str]
    erlang_cookie: pulumi.Output[str]


@dataclass(frozen=True)
class RedisCredentials:
    """`password` is the administrator's (Redis' `default` user: the creation step, health checks, replication);
    the applications log in as their own ACL user `app_user`, which cannot run administrative commands."""

    password: pulumi.Output[str]
    app_user: str
    app_password: pulumi.Output[str]
    # The monitoring part's exporter's own ACL user (INFO and a few read-only statistics, no key): only where the
    # part is on (PlatformSecrets' redis_monitor), None otherwise.
    monitor_user: str | None = None
    monitor_password: pulumi.Output[str] | None = None


class PlatformSecrets(pulumi.ComponentResource):
    """Every generated credential of one stack. Values are URL-safe (no special characters), so they
    can stand in connection strings unescaped; 32 alphanumerics carry ~190 bits."""

    postgres: PostgresPasswords
    rabbitmq: RabbitMQCredentials
    redis: RedisCredentials

    def __init__(self, name: str, opts: pulumi.ResourceOptions | None = None, *, redis_monitor: bool = False) -> None:
        """`redis_monitor`: the monitoring part is built (model/thresholds.py redis_monitor_user), and its Redis
        exporter gets a user and password of its own; off, no such password exists (the stack renders as before)."""
        super().__init__(TYPE, name, None, opts)

        def password(purpose: str, length: int = 32) -> pulumi.Output[str]:
            generated = random.RandomPassword(
                f"{name}-{purpose}",
                length=length,
                special=False,
                opts=pulumi.ResourceOptions(parent=self),
            )
            return pulumi.Output.secret(generated.result)

        self.postgres = PostgresPasswords(
            superuser=password("postgres-superuser"),
            app=password("postgres-app"),
            replication=password("postgres-replication"),
        )
        self.rabbitmq = RabbitMQCredentials(
            admin_user="banyan-admin",
            admin_password=password("rabbitmq-admin"),
            app_user="banyan-app",
            app_password=password("rabbitmq-app"),
            # The Erlang cookie lets nodes (and the CLI tools) join the cluster: as sensitive as a root password.
            erlang_cookie=password("rabbitmq-erlang-cookie", length=48),
        )
        # Imported here: components.redis imports this module (its builders take RedisCredentials).
        from components.redis.config import APP_USER as REDIS_APP_USER
        from components.redis.config import MONITOR_USER as REDIS_MONITOR_USER

        self.redis = RedisCredentials(password=password("redis"), app_user=REDIS_APP_USER,
                                      app_password=password("redis-app"),
                                      monitor_user=REDIS_MONITOR_USER if redis_monitor else None,
                                      monitor_password=password("redis-monitor") if redis_monitor else None)
        self.register_outputs({})
