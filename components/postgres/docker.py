"""PostgreSQL on Docker: a primary and N streaming read replicas, one container each, on the files
components/postgres/config.py renders."""

from __future__ import annotations

import pulumi
import pulumi_docker as docker

from components import docker_common as dc
from components.postgres import backup as pg_backup
from components.postgres.config import (
    APP_PASSWORD_ENV,
    CONF_PATH,
    ENTRYPOINT_PATH,
    HBA_PATH,
    REPLICATION_PASSWORD_ENV,
    backup_paths,
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
from model.preflight import POSTGRES_MAJOR_LABEL, POSTGRES_RESTORE_LABEL
from model.spec import PostgresSpec, Resources, ResourceSpec

# A fast shutdown still writes a checkpoint; Docker's default 10 s before SIGKILL can cut it short and
# turn every stop into crash recovery.
STOP_TIMEOUT_S = 60
# A replica's first start copies the whole primary; `pulumi up` waits for it to be healthy.
REPLICA_SEED_TIMEOUT_S = 600
# The backup container: pgBackRest compresses on one core; its memory is buffers, not the database's.
BACKUP_RESOURCES = ResourceSpec(limits=Resources(cpu_millis=1000, memory_mib=512),
                                requests=Resources(cpu_millis=100, memory_mib=128))


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

    # The major version whose data directory the containers run on: the preflight refuses a new major over it.
    major_label = {POSTGRES_MAJOR_LABEL: str(spec.version)}
    primary_data = dc.volume(target, f"{name}-primary-data", spec.primary_name, spec.name, parent)
    # Backups: pgBackRest's file in every instance (a promoted replica archives too), the S3 keys in the
    # environment of those that push or take backups, and the local repository's volume where there is one.
    backup_uploads: list[dc.Upload] = []
    backup_env: dict[str, pulumi.Input[str]] = {}
    backup_mounts: list[dc.Mount] = []
    backup_volume = None
    if spec.backup is not None:
        backup_uploads = [dc.Upload(pg_backup.PGBACKREST_CONF,
                                    pg_backup.render_pgbackrest_conf(spec, backup_paths(spec)))]
        if spec.backup.access_key_id is not None and spec.backup.secret_access_key is not None:
            backup_env = {pg_backup.S3_KEY_ENV: pulumi.Output.secret(spec.backup.access_key_id),
                          pg_backup.S3_SECRET_ENV: pulumi.Output.secret(spec.backup.secret_access_key)}
        backup_volume = dc.volume(target, f"{name}-backup-data", spec.backup_name, spec.name, parent)
        if spec.backup.repository is None:
            backup_mounts = [dc.Mount(backup_volume, pg_backup.BACKUP_MOUNT)]
    primary_labels = dict(major_label)
    if spec.restore is not None:
        primary_labels[POSTGRES_RESTORE_LABEL] = spec.restore.restore_id
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
            **backup_env,
        },
        entrypoint=[ENTRYPOINT_PATH],
        command=server_command(),
        uploads=[
            dc.Upload(CONF_PATH, render_postgresql_conf(spec)),
            dc.Upload(HBA_PATH, hba),
            dc.Upload(ENTRYPOINT_PATH, render_entrypoint(spec), executable=True),
            *backup_uploads,
        ],
        mounts=[dc.Mount(primary_data, layout.mount), *backup_mounts],
        stateful=True,
        stop_timeout_s=STOP_TIMEOUT_S,
        shm_size_mib=shm_size_mib(spec),
        labels=primary_labels,
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
                env={**common_env, REPLICATION_PASSWORD_ENV: passwords.replication, APP_PASSWORD_ENV: passwords.app,
                     **backup_env},
                entrypoint=[ENTRYPOINT_PATH],
                command=server_command(),
                uploads=[
                    dc.Upload(CONF_PATH, render_postgresql_conf(spec, i)),
                    dc.Upload(HBA_PATH, hba),
                    dc.Upload(ENTRYPOINT_PATH, render_entrypoint(spec, i), executable=True),
                    *backup_uploads,
                ],
                mounts=[dc.Mount(data, layout.mount), *backup_mounts],
                # The primary is created, and healthy (wait=True), before any replica starts seeding.
                depends_on=[primary],
                stateful=True,
                wait_timeout_s=REPLICA_SEED_TIMEOUT_S,
                stop_timeout_s=STOP_TIMEOUT_S,
                shm_size_mib=shm_size_mib(spec),
                labels=major_label,
            )
        )

    if backup_volume is not None:
        _backup_container(parent, name, spec, target, primary, primary_data, backup_volume, backup_env)
    return Built(hosts=[spec.primary_name, *spec.replica_names], port=spec.port, wait_on=[primary, *replicas])


def backup_health(spec: PostgresSpec) -> str:
    """Healthy while the backup container keeps its metrics file fresh (every POLL_S seconds; three missed)."""
    minutes = max(1, 3 * pg_backup.POLL_S // 60)
    return f'[ -n "$(find {pg_backup.METRICS_FILE} -mmin -{minutes} 2>/dev/null)" ]'


def _backup_container(parent: pulumi.Resource, name: str, spec: PostgresSpec, target: DockerTarget,
                      primary: docker.Container, primary_data: docker.Volume, backup_volume: docker.Volume,
                      backup_env: dict[str, pulumi.Input[str]]) -> docker.Container:
    """Beside the primary, on its data volume (pgBackRest reads the data directory and talks to the server over
    the socket there) and on the backup volume: full backups on schedule, the archive's metrics, the drill."""
    layout = data_layout(spec.version)
    paths = backup_paths(spec)
    return dc.container(
        f"{name}-backup",
        target=target,
        instance=spec.backup_name,
        part=spec.name,
        image=spec.image,
        resources=BACKUP_RESOURCES,
        health=dc.Health(("CMD-SHELL", backup_health(spec)), start_period_s=120),
        parent=parent,
        env={"PGDATA": layout.pgdata, **backup_env},
        entrypoint=[pg_backup.BACKUP_SCRIPT],
        command=["run"],
        uploads=[
            dc.Upload(pg_backup.PGBACKREST_CONF, pg_backup.render_pgbackrest_conf(spec, paths, takes_backups=True)),
            dc.Upload(pg_backup.BACKUP_SCRIPT, pg_backup.render_backup_script(spec, paths), executable=True),
        ],
        mounts=[dc.Mount(primary_data, layout.mount), dc.Mount(backup_volume, pg_backup.BACKUP_MOUNT)],
        depends_on=[primary],
        stateful=True,
        stop_timeout_s=STOP_TIMEOUT_S,
    )
