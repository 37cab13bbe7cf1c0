"""PostgresCluster: on Docker a primary and N streaming read replicas of the official image; on Kubernetes
the same spec through CloudNativePG (components/postgres/kubernetes.py)."""

from __future__ import annotations

import pulumi
import pulumi_docker as docker

from components import docker_common as dc
from components.postgres import kubernetes
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
    pg_hba_conf,
    postgresql_conf,
    primary_init_script,
    replica_entrypoint,
    server_command,
)
from components.secrets import PostgresPasswords
from components.target import DockerTarget, KubernetesTarget, Target, require_target
from model.spec import PostgresSpec

TYPE = "banyan:index:PostgresCluster"
# A fast shutdown still writes a checkpoint; Docker's default 10 s before SIGKILL can cut it short and
# turn every stop into crash recovery.
STOP_TIMEOUT_S = 60
# A replica's first start copies the whole primary; `pulumi up` waits for it to be healthy.
REPLICA_SEED_TIMEOUT_S = 600


def shm_size_mib(spec: PostgresSpec) -> int:
    """/dev/shm for parallel queries' dynamic shared memory: Docker's 64 MiB default fails them under load
    ("could not resize shared memory segment"); a quarter of the memory limit, as shared_buffers."""
    return max(64, spec.shared_buffers_mib)


class PostgresCluster(pulumi.ComponentResource):
    """One primary and `spec.replicas` hot standbys streaming from it, each through its own slot.

    Applications write to `primary_host` and may read from `replica_hosts`, as `user` on `database`.
    `containers` are what dependants wait for: the containers (Docker), the Cluster and Pooler (Kubernetes).
    """

    primary_host: str
    replica_hosts: list[str]
    port: int
    database: str
    user: str
    containers: list[pulumi.Resource]

    def __init__(
        self,
        name: str,
        spec: PostgresSpec,
        *,
        passwords: PostgresPasswords,
        target: Target,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        require_target(target, "PostgresCluster")
        super().__init__(TYPE, name, None, opts)
        self.port = spec.port
        self.database = spec.database
        self.user = spec.user
        if isinstance(target, KubernetesTarget):
            built = kubernetes.build(self, name, spec, passwords=passwords, target=target)
            self.primary_host = built.primary_host
            self.replica_hosts = built.replica_hosts
            self.containers = built.resources
        else:
            self.primary_host = spec.primary_name
            self.replica_hosts = list(spec.replica_names)
            self.containers = self._docker(name, spec, passwords, target)
        self.register_outputs(
            {
                "primary_host": self.primary_host,
                "replica_hosts": self.replica_hosts,
                "port": self.port,
                "database": self.database,
                "user": self.user,
                "containers": self.containers,
            }
        )

    def _docker(self, name: str, spec: PostgresSpec, passwords: PostgresPasswords,
                target: DockerTarget) -> list[pulumi.Resource]:
        layout = data_layout(spec.version)
        # PGDATA is set even where it equals the image default: the replica entrypoint seeds into it.
        # PGPORT makes the image's socket-only init server, psql and pg_isready use the spec's port.
        common_env: dict[str, pulumi.Input[str]] = {"PGDATA": layout.pgdata, "PGPORT": str(spec.port)}
        hba = pg_hba_conf(spec)

        primary_data = dc.volume(target, f"{name}-primary-data", spec.primary_name, spec.name, self)
        primary = dc.container(
            f"{name}-primary",
            target=target,
            instance=spec.primary_name,
            part=spec.name,
            image=spec.image,
            resources=spec.resources,
            health=dc.Health(("CMD-SHELL", health_command(spec)), start_period="60s"),
            parent=self,
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
                dc.Upload(CONF_PATH, postgresql_conf(spec)),
                dc.Upload(HBA_PATH, hba),
                dc.Upload(INIT_PATH, primary_init_script(spec), executable=True),
            ],
            mounts=[dc.Mount(primary_data, layout.mount)],
            stateful=True,
            stop_timeout_s=STOP_TIMEOUT_S,
            shm_size_mib=shm_size_mib(spec),
        )

        replicas: list[docker.Container] = []
        for i, instance in enumerate(spec.replica_names, start=1):
            data = dc.volume(target, f"{name}-replica-{i}-data", instance, spec.name, self)
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
                    parent=self,
                    # A replica needs no superuser password: its data directory comes from the primary.
                    env={**common_env, REPLICATION_PASSWORD_ENV: passwords.replication},
                    entrypoint=[REPLICA_ENTRYPOINT_PATH],
                    command=server_command(),
                    uploads=[
                        dc.Upload(CONF_PATH, postgresql_conf(spec, i)),
                        dc.Upload(HBA_PATH, hba),
                        dc.Upload(REPLICA_ENTRYPOINT_PATH, replica_entrypoint(spec, i), executable=True),
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

        return [primary, *replicas]
