"""PostgreSQL on Docker: a primary and N streaming read replicas, one container each, on the files
components/postgres/config.py renders."""

from __future__ import annotations

import pulumi
import pulumi_docker as docker

from components import docker_common as dc
from components.postgres.config import (
    APP_PASSWORD_ENV,
    CONF_PATH,
    HBA_PATH,
    INIT_PATH,
    REPLICA_ENTRYPOINT_PATH,
    REPLICATION_PASSWORD_ENV,
    SUPERUSER,
    data_layout,
    health_command,
    render_pg_hba_conf,
    render_postgresql_conf,
    render_primary_init_script,
    render_replica_entrypoint,
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
    # PGDATA is set even where it equals the image default: the replica entrypoint seeds into it.
    # PGPORT makes the image's socket-only init server, psql and pg_isready use the spec's port.
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
        health=dc.Health(("CMD-SHELL", health_command(spec)), start_period="60s"),
        parent=parent,
        env={
            **common_env,
            "POSTGRES_USER": SUPERUSER,
            "POSTGRES_PASSWORD": passwords.superuser,
            "POSTGRES_INITDB_ARGS": "--data-checksums",
            APP_PASSWORD_ENV: passwords.app,
            REPLICATION_PASSWORD_ENV: passwords.replication,
        },
        command=server_command(),
        uploads=[
            dc.Upload(CONF_PATH, render_postgresql_conf(spec)),
            dc.Upload(HBA_PATH, hba),
            dc.Upload(INIT_PATH, render_primary_init_script(spec), executable=True),
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
                    ("CMD-SHELL", health_command(spec, i)), timeout="5s", start_period=f"{REPLICA_SEED_TIMEOUT_S}s"
                ),
                parent=parent,
                # A replica needs no superuser password: its data directory comes from the primary.
                env={**common_env, REPLICATION_PASSWORD_ENV: passwords.replication},
                entrypoint=[REPLICA_ENTRYPOINT_PATH],
                command=server_command(),
                uploads=[
                    dc.Upload(CONF_PATH, render_postgresql_conf(spec, i)),
                    dc.Upload(HBA_PATH, hba),
                    dc.Upload(REPLICA_ENTRYPOINT_PATH, render_replica_entrypoint(spec, i), executable=True),
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
