"""Redis on Docker: one container and volume per node, plus a one-shot cluster-creation step."""

from __future__ import annotations

import hashlib

import pulumi
import pulumi_docker as docker

from components import docker_common
from components.redis.config import (
    APP_PASSWORD_ENV,
    CLI_AUTH_ENV,
    CONF_PATH,
    CREATE_PATH,
    DATA_DIR,
    MONITOR_PASSWORD_ENV,
    PASSWORD_ENV,
    START_PATH,
    health_test,
    render_cluster_create_script,
    render_redis_conf,
    render_start_script,
)
from components.seam import Built
from components.secrets import RedisCredentials
from components.target import DockerTarget
from model.preflight import CONFIG_LABEL, INSTANCE_LABEL, PART_LABEL
from model.readback import docker_cpus
from model.spec import RedisSpec

PART = "redis"
# On SIGTERM Redis 7 gives lagging replicas up to shutdown-timeout (10 s) before exiting; Docker's
# SIGKILL has to come after that.
STOP_TIMEOUT_S = 15
# The creation script bounds itself (readiness 120 s + settling 60 s + the create); this bounds the
# provider's wait for it to exit, should the container hang anyway.
CREATE_TIMEOUT = "10m"
# sh and redis-cli: a few MiB.
CREATE_MEMORY_MIB = 64
CREATE_CPUS = docker_cpus(500)
LOG_TAIL_LINES = 30
NODE_ENTRYPOINT = ["/bin/sh", START_PATH]


def node_uploads(spec: RedisSpec, instance: str, *, monitor: bool = False) -> list[docker_common.Upload]:
    """The files node `instance` runs on (its redis.conf announces its own host name). `monitor`: the start
    script also defines the monitoring exporter's user (RedisCredentials.monitor_password is set)."""
    return [
        docker_common.Upload(CONF_PATH, render_redis_conf(spec, instance)),
        docker_common.Upload(START_PATH, render_start_script(spec, monitor=monitor), executable=True),
    ]


def node_digest(spec: RedisSpec, instance: str, *, monitor: bool = False) -> str:
    """The config label node `instance` of `spec` carries (docker_common.CONFIG_LABEL)."""
    return docker_common.config_digest(node_uploads(spec, instance, monitor=monitor), None, NODE_ENTRYPOINT)


def node_env(credentials: RedisCredentials) -> dict[str, pulumi.Input[str]]:
    """Every node's environment (the Swarm target's too): the administrator's password (requirepass; redis-cli
    in the health check), the applications' (their ACL user, which the start script defines) and, where the
    monitoring part is on, its exporter's (its ACL user, likewise)."""
    env: dict[str, pulumi.Input[str]] = {PASSWORD_ENV: credentials.password, CLI_AUTH_ENV: credentials.password,
                                         APP_PASSWORD_ENV: credentials.app_password}
    if credentials.monitor_password is not None:
        env[MONITOR_PASSWORD_ENV] = credentials.monitor_password
    return env


def build(parent: pulumi.Resource, name: str, spec: RedisSpec, *, credentials: RedisCredentials,
          target: DockerTarget) -> Built:
    """One container and volume per node; in cluster mode also the creation step, whose success is `ready`."""
    env = node_env(credentials)
    nodes: list[docker.Container] = []
    for i, instance in enumerate(spec.instance_names, 1):
        data = docker_common.volume(target, f"{name}-node-{i}-data", instance, PART, parent)
        nodes.append(
            docker_common.container(
                f"{name}-node-{i}",
                target=target,
                instance=instance,
                part=PART,
                image=spec.image,
                resources=spec.resources,
                health=docker_common.Health(health_test(spec)),
                parent=parent,
                env=env,
                entrypoint=["/bin/sh", START_PATH],
                uploads=node_uploads(spec, instance, monitor=credentials.monitor_password is not None),
                # Data, AOF and the cluster's nodes.conf: all of a node's state outlives its container.
                mounts=[docker_common.Mount(data, DATA_DIR)],
                stateful=True,
                stop_timeout_s=STOP_TIMEOUT_S,
            )
        )

    hosts = list(spec.instance_names)
    if spec.mode != "cluster":
        return Built(hosts=hosts, port=spec.port, wait_on=list(nodes), ready=pulumi.Output.from_input(True))
    create = _create_step(name, spec, credentials, target, nodes, parent)
    ready = pulumi.Output.all(create.exit_code, create.container_logs, create.urn).apply(
        lambda args: _created(args[0], args[1], args[2])
    )
    return Built(hosts=hosts, port=spec.port, wait_on=[*nodes, create], ready=ready)


def _create_step(
    name: str,
    spec: RedisSpec,
    credentials: RedisCredentials,
    target: DockerTarget,
    nodes: list[docker.Container],
    parent: pulumi.Resource,
) -> docker.Container:
    """A container that runs the creation script once and exits.

    attach=True makes the provider wait for it to exit and record exit_code (and, with logs=True, its
    output in container_logs); must_run=False accepts a stopped container instead of deleting it as a
    failed start; restart "no" keeps Docker from running it again. A non-zero exit does not fail the
    provider's create, so RedisCluster.ready turns it into an error.
    """
    instance = spec.cluster_create_name
    script = render_cluster_create_script(spec)
    pulled = target.image(spec.image)
    # Replacing a node (new image or config) replaces this step too, so it runs again and dependants wait
    # until the cluster agrees again; the run finds the cluster formed and changes nothing.
    node_ids = pulumi.Output.all(*(node.id for node in nodes)).apply(
        lambda ids: hashlib.sha256(",".join(str(i) for i in ids).encode()).hexdigest()[:16]
    )
    labels: dict[str, pulumi.Input[str]] = {
        **target.labels,
        PART_LABEL: PART,
        INSTANCE_LABEL: instance,
        "banyan.redis-nodes": node_ids,
        CONFIG_LABEL: docker_common.config_digest(
            [docker_common.Upload(CREATE_PATH, script, executable=True)], None,
            ["/bin/sh", CREATE_PATH]),
    }
    return docker.Container(
        f"{name}-create",
        name=target.container_name(instance),
        hostname=instance,
        image=spec.image,
        entrypoints=["/bin/sh", CREATE_PATH],
        envs=docker_common.env_list({CLI_AUTH_ENV: credentials.password}),
        uploads=[
            docker.ContainerUploadArgs(
                file=CREATE_PATH, content=script, executable=True
            )
        ],
        networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=target.network_name)],
        labels=[docker.ContainerLabelArgs(label=k, value=v) for k, v in sorted(labels.items())],
        memory=CREATE_MEMORY_MIB,
        cpus=CREATE_CPUS,
        log_driver="json-file",
        log_opts={"max-file": "3", "max-size": "10m"},
        restart="no",
        attach=True,
        logs=True,
        must_run=False,
        # No health check to wait for: the exit code is the result.
        wait=False,
        opts=pulumi.ResourceOptions(
            parent=parent,
            depends_on=[pulled, *nodes],
            # The container name is fixed: the old step must be gone before the new one is created.
            delete_before_replace=True,
            custom_timeouts=pulumi.CustomTimeouts(create=CREATE_TIMEOUT),
        ),
    )


def _created(exit_code: int | None, logs: str | None, urn: str) -> bool:
    """The creation step's result. Unknown (None) under mocks, where no container runs."""
    if exit_code is None or exit_code == 0:
        return True
    tail = "\n".join((logs or "").strip().splitlines()[-LOG_TAIL_LINES:])
    raise pulumi.RunError(
        f"Redis cluster creation failed: the creation step exited with {exit_code}; its last output:\n{tail}\n"
        f"Fix the cause, then run the step again with `pulumi up --replace '{urn}'` "
        "(a run against a formed cluster changes nothing)."
    )
