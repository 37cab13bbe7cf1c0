"""PostgreSQL on Docker: a primary and N streaming read replicas, one container each, on the files
components/postgres/config.py renders."""

from __future__ import annotations

import pulumi
import pulumi_docker as docker

from components import docker_common as dc
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
from components.seam import Built
from components.secrets import PostgresPasswords
from components.target import DockerTarget
from model.spec import PostgresSpec

# A fast shutdown still writes a checkpoint; Docker's default 10 s before SIGKILL can cut it short and
# turn every stop into crash recovery.
STOP_TIMEOUT_S = 60
# A replica's first start copies the whole primary; `pulumi up` waits for it to be healthy.
REPLICA_SEED_TIMEOUT_S = 600


def shm_size_mib(spec: PostgresSpec) -> int:
    """/dev/shm for parallel queries' dynamic shared memory: Docker's 64 MiB default fails them under load
    ("could not resize shared memory segment"); a quarter of the memory limit, as shared_buffers."""
    return max(64, spec.shared_buffers_mib)


def build(parent: pulumi.Resource, name: str, spec: PostgresSpec, *, passwords: PostgresPasswords,
          target: DockerTarget) -> Built:
    layout = data_layout(spec.version)
    # PGDATA is set even where it equals the image default: the entrypoint initialises or seeds into it.
    # PGPORT makes the entrypoint's socket-only temporary server, psql and pg_isready use the spec's port.
    common_env: dict[str, pulumi.Input[str]] = {"PGDATA": layout.pgdata, "PGPORT": str(spec.port)}
    hba = render_pg_hba_conf(spec)

    primary_data = dc.volume(target, f"{name}-primary-data", spec.primary_name, spec.name, parent)
    primary = dc.container(
        f"{name}-primary",
        target=target,
        instance=spec.primary_name,
        part=spec.name,
        image=spec.image,
        resources=spec.resources,
        health=dc.Health(("CMD-SHELL", health_command(spec)), start_period_s=60),
        parent=parent,
        # The bootstrap superuser is reached over the trusted socket only: it needs no password.
        env={
            **common_env,
            APP_PASSWORD_ENV: passwords.app,
            REPLICATION_PASSWORD_ENV: passwords.replication,
        },
        entrypoint=[ENTRYPOINT_PATH],
        command=server_command(),
        uploads=[
            dc.Upload(CONF_PATH, render_postgresql_conf(spec)),
            dc.Upload(HBA_PATH, hba),
            dc.Upload(ENTRYPOINT_PATH, render_entrypoint(spec), executable=True),
        ],
        mounts=[dc.Mount(primary_data, layout.mount)],
        stateful=True,
        stop_timeout_s=STOP_TIMEOUT_S,
        shm_size_mib=shm_size_mib(spec),
    )

    replicas: list[docker.Container] = []
    for i, instance in enumerate(spec.replica_names, start=1):
        data = dc.volume(target, f"{name}-replica-{i}-data", instance, spec.name, parent)
        replicas.append(
            dc.container(
                f"{name}-replica-{i}",
                target=target,
                instance=instance,
                part=spec.name,
                image=spec.image,
                resources=spec.resources,
                health=dc.Health(
                    ("CMD-SHELL", health_command(spec, i)), timeout_s=5, start_period_s=REPLICA_SEED_TIMEOUT_S
                ),
                parent=parent,
                # The replication password seeds and streams; the application's, for the health check that
                # authenticates as the application would (its role comes from the primary).
                env={**common_env, REPLICATION_PASSWORD_ENV: passwords.replication, APP_PASSWORD_ENV: passwords.app},
                entrypoint=[ENTRYPOINT_PATH],
                command=server_command(),
                uploads=[
                    dc.Upload(CONF_PATH, render_postgresql_conf(spec, i)),
                    dc.Upload(HBA_PATH, hba),
                    dc.Upload(ENTRYPOINT_PATH, render_entrypoint(spec, i), executable=True),
                ],
                mounts=[dc.Mount(data, layout.mount)],
                # The primary is created, and healthy (wait=True), before any replica starts seeding.
                depends_on=[primary],
                stateful=True,
                wait_timeout_s=REPLICA_SEED_TIMEOUT_S,
                stop_timeout_s=STOP_TIMEOUT_S,
                shm_size_mib=shm_size_mib(spec),
            )
        )

    return Built(hosts=[spec.primary_name, *spec.replica_names], port=spec.port, wait_on=[primary, *replicas])
