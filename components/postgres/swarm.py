"""PostgreSQL on Docker Swarm: the primary and each replica a single-replica service on its own volume, on the
files and entrypoint components/postgres/config.py renders (the Docker target's, unchanged)."""

from __future__ import annotations

import pulumi

from components import docker_common as dc
from components import swarm_common as sc
from components.postgres.config import (
    APP_PASSWORD_ENV,
    CONF_PATH,
    ENTRYPOINT_PATH,
    HBA_PATH,
    REPLICATION_PASSWORD_ENV,
    data_layout,
    health_command,
    render_entrypoint,
    render_pg_hba_conf,
    render_postgresql_conf,
    server_command,
)
from components.postgres.docker import REPLICA_SEED_TIMEOUT_S, STOP_TIMEOUT_S, shm_size_mib
from components.seam import Built
from components.secrets import PostgresPasswords
from components.target import SwarmTarget
from model.preflight import POSTGRES_MAJOR_LABEL
from model.spec import PostgresSpec


def build(parent: pulumi.Resource, name: str, spec: PostgresSpec, *, passwords: PostgresPasswords,
          target: SwarmTarget) -> Built:
    layout = data_layout(spec.version)
    common_env: dict[str, pulumi.Input[str]] = {"PGDATA": layout.pgdata, "PGPORT": str(spec.port)}
    hba = render_pg_hba_conf(spec)
    major_label = {POSTGRES_MAJOR_LABEL: str(spec.version)}

    def instance_service(logical: str, instance: str, replica: int | None, env: dict[str, pulumi.Input[str]],
                         health: dc.Health, depends_on: list[pulumi.Resource], timeout_s: int) -> pulumi.Resource:
        return sc.service(
            logical,
            target=target,
            instance=instance,
            hostname=instance,
            part=spec.name,
            image=spec.image,
            resources=spec.resources,
            health=health,
            parent=parent,
            rollout=sc.Rollout.stateful(),
            env={**common_env, **env},
            entrypoint=[ENTRYPOINT_PATH],
            command=server_command(),
            uploads=[
                dc.Upload(CONF_PATH, render_postgresql_conf(spec, replica)),
                dc.Upload(HBA_PATH, hba),
                dc.Upload(ENTRYPOINT_PATH, render_entrypoint(spec, replica), executable=True),
            ],
            mounts=[sc.VolumeMount(target.volume_name(instance), layout.mount)],
            constraints=sc.placement(target, instance),
            dnsrr=True,
            shm_size_mib=shm_size_mib(spec),
            stop_timeout_s=STOP_TIMEOUT_S,
            converge_timeout_s=timeout_s,
            depends_on=depends_on,
            labels=major_label,
        )

    primary = instance_service(
        f"{name}-primary", spec.primary_name, None,
        {APP_PASSWORD_ENV: passwords.app, REPLICATION_PASSWORD_ENV: passwords.replication},
        dc.Health(("CMD-SHELL", health_command(spec)), start_period_s=60), [], sc.DEFAULT_CONVERGE_TIMEOUT_S)
    replicas = [
        # The primary's service has converged (healthy) before any replica starts seeding from it.
        instance_service(
            f"{name}-replica-{i}", instance, i,
            {REPLICATION_PASSWORD_ENV: passwords.replication, APP_PASSWORD_ENV: passwords.app},
            dc.Health(("CMD-SHELL", health_command(spec, i)), timeout_s=5, start_period_s=REPLICA_SEED_TIMEOUT_S),
            [primary], REPLICA_SEED_TIMEOUT_S)
        for i, instance in enumerate(spec.replica_names, start=1)
    ]
    return Built(hosts=[spec.primary_name, *spec.replica_names], port=spec.port, wait_on=[primary, *replicas])
