"""RabbitMQ on Docker: one container per node, clustered by classic-config peer discovery."""

from __future__ import annotations

import pulumi

from components import docker_common
from components.rabbitmq.config import (
    ADMIN_PASSWORD_ENV,
    ADMIN_USER_ENV,
    APP_PASSWORD_ENV,
    APP_USER_ENV,
    CONF_PATH,
    COOKIE_ENV,
    DATA_DIR,
    ENTRYPOINT_PATH,
    NO_EXTRA_CONFIG_FILES,
    PLUGINS_PATH,
    node_name,
    render_enabled_plugins,
    render_entrypoint,
    render_rabbitmq_conf,
)
from components.seam import Built
from components.secrets import RabbitMQCredentials
from components.target import DockerTarget
from model.spec import RabbitMQSpec

# Each check starts an Erlang VM for the CLI (about a second of CPU); check_running fails while the node boots,
# waits for its peers' tables or is paused in a minority, and check_port_connectivity proves the listeners accept.
# The last step authenticates as the applications do: it fails until the entrypoint has reconciled the users
# with this deployment's passwords (a retained volume from an earlier deployment holds other ones).
HEALTH = docker_common.Health(
    test=("CMD-SHELL", "rabbitmq-diagnostics -q check_running && rabbitmq-diagnostics -q check_port_connectivity"
          f' && printf %s "${APP_PASSWORD_ENV}" | rabbitmqctl -q authenticate_user "${APP_USER_ENV}" >/dev/null'),
    interval_s=10,
    timeout_s=15,
    retries=6,
    # Erlang boot, plugin start and joining the cluster; a restarted node may also wait for its peers' tables.
    start_period_s=60,
)
# A restarted 3.x node waits up to 5 minutes for the peer that stopped last before giving up.
WAIT_TIMEOUT_S = 330
# A clean stop lets quorum queues hand over leadership and Mnesia record who stopped last.
STOP_TIMEOUT_S = 60
# Docker drops the image's CMD once the entrypoint is replaced.
NODE_COMMAND = ["rabbitmq-server"]


def node_uploads(spec: RabbitMQSpec) -> list[docker_common.Upload]:
    """The files every node runs on (the same for each node)."""
    return [
        docker_common.Upload(CONF_PATH, render_rabbitmq_conf(spec)),
        docker_common.Upload(PLUGINS_PATH, render_enabled_plugins(spec)),
        docker_common.Upload(ENTRYPOINT_PATH, render_entrypoint(), executable=True),
    ]


def node_digest(spec: RabbitMQSpec) -> str:
    """The config label every node of `spec` carries (docker_common.CONFIG_LABEL)."""
    return docker_common.config_digest(node_uploads(spec), NODE_COMMAND, [ENTRYPOINT_PATH])


def node_env(instance: str, credentials: RabbitMQCredentials) -> dict[str, pulumi.Input[str]]:
    """Node `instance`'s environment (the Swarm target's too)."""
    return {
        "RABBITMQ_NODENAME": node_name(instance),
        "RABBITMQ_CONFIG_FILES": NO_EXTRA_CONFIG_FILES,
        # The CLI tools (the entrypoint's, the health check's, `docker exec`) find the cookie here.
        "HOME": DATA_DIR,
        # Read by the broker itself at first boot of an empty cluster, so that no `guest` is ever created;
        # the entrypoint reconciles both users at every start after that.
        "RABBITMQ_DEFAULT_USER": credentials.admin_user,
        "RABBITMQ_DEFAULT_PASS": credentials.admin_password,
        ADMIN_USER_ENV: credentials.admin_user,
        ADMIN_PASSWORD_ENV: credentials.admin_password,
        APP_USER_ENV: credentials.app_user,
        APP_PASSWORD_ENV: credentials.app_password,
        COOKIE_ENV: credentials.erlang_cookie,
    }


def build(parent: pulumi.Resource, name: str, spec: RabbitMQSpec, *, credentials: RabbitMQCredentials,
          target: DockerTarget) -> Built:
    uploads = node_uploads(spec)
    # All nodes start together rather than nodes 2..N waiting for node 1's health. A fresh node retries peer
    # discovery until it reaches listed peers and joins the one they all pick (3.13: the oldest, largest
    # cluster; 3.10-3.12: whoever took the discovery lock first), so the order does not matter. Waiting
    # would only hurt: node 1 alone retries for a peer (~30 s on 3.13) before starting by itself, and a
    # restart in which node 1 did not stop last would deadlock, as Mnesia makes it wait for the node that did.
    nodes: list[pulumi.Resource] = []
    for i, instance in enumerate(spec.instance_names, start=1):
        env = node_env(instance, credentials)
        mounts = []
        if spec.persistence:
            data = docker_common.volume(target, f"{name}-{i}-data", instance, spec.name, parent)
            mounts.append(docker_common.Mount(data, DATA_DIR))
        published = []
        if i == 1 and spec.management_host_port is not None:
            published.append(docker_common.Published(spec.management_port, spec.management_host_port))
        nodes.append(
            docker_common.container(
                f"{name}-{i}",
                target=target,
                instance=instance,
                part=spec.name,
                image=spec.image,
                resources=spec.resources,
                health=HEALTH,
                parent=parent,
                env=env,
                entrypoint=[ENTRYPOINT_PATH],
                command=NODE_COMMAND,
                uploads=uploads,
                mounts=mounts,
                published=published,
                stateful=spec.persistence,
                wait_timeout_s=WAIT_TIMEOUT_S,
                stop_timeout_s=STOP_TIMEOUT_S,
            )
        )

    management_url = (
        f"http://127.0.0.1:{spec.management_host_port}" if spec.management_host_port is not None else None
    )
    return Built(hosts=list(spec.instance_names), port=spec.port, wait_on=nodes, url=management_url)
