"""RabbitMQ's configuration, rendered from the spec alone: Docker nodes' files and the operator's additionalConfig."""

from __future__ import annotations

from model.spec import RabbitMQSpec

CONF_PATH = "/etc/rabbitmq/rabbitmq.conf"
PLUGINS_PATH = "/etc/rabbitmq/enabled_plugins"
DATA_DIR = "/var/lib/rabbitmq"
ENTRYPOINT_PATH = "/usr/local/bin/banyan-rabbitmq-entrypoint.sh"
# Not RABBITMQ_ERLANG_COOKIE: RabbitMQ deprecates that variable and its CLI warns on every call while it is set.
COOKIE_ENV = "BANYAN_ERLANG_COOKIE"
# The official image's own conf.d would load after our rabbitmq.conf and win (it sets loopback_users.guest = false);
# pointing RABBITMQ_CONFIG_FILES at a path that never exists leaves our file the only configuration.
NO_EXTRA_CONFIG_FILES = "/etc/rabbitmq/banyan-no-conf.d"

# The node-wide `default_queue_type` key arrived in a 3.13 patch release (3.13.3); 3.12 and older reject it.
_NODE_DEFAULT_QUEUE_TYPE_SINCE = (3, 13)
_PLUGINS = ("rabbitmq_management",)


def version(spec: RabbitMQSpec) -> tuple[int, int]:
    major, minor = spec.version.split(".")[:2]
    return int(major), int(minor)


def node_name(instance: str) -> str:
    """Short node names: the container's host name has no dots, and Erlang must see the same name everywhere."""
    return f"rabbit@{instance}"


def node_names(spec: RabbitMQSpec) -> tuple[str, ...]:
    return tuple(node_name(i) for i in spec.instance_names)


def supports_node_default_queue_type(spec: RabbitMQSpec) -> bool:
    return version(spec) >= _NODE_DEFAULT_QUEUE_TYPE_SINCE


def partition_handling(nodes: int) -> str:
    """pause_minority needs a majority to exist: with 2 nodes each side is half and both would pause."""
    if nodes >= 3:
        return "pause_minority"
    if nodes == 2:
        return "autoheal"
    return "ignore"


def disk_free_limit_mib(spec: RabbitMQSpec) -> int:
    """RabbitMQ's guidance is free disk of at least its memory (a node may page that much out), floored at the
    quorum-queue WAL's 512 MiB default and capped at half the volume so a small volume is not born in alarm."""
    return min(max(spec.resources.limits.memory_mib, 512), spec.storage_gib * 1024 // 2)


def guest_settings(default_user_source: str) -> list[str]:
    """No guest user exists; one created by hand would still be confined to the node's loopback."""
    return [
        f"# There is no guest user: the only user is the admin from {default_user_source}.",
        "# Should a guest ever be created by hand, it still may only connect from the node itself.",
        "loopback_users.guest = true",
    ]


def alarm_settings(spec: RabbitMQSpec) -> list[str]:
    """Memory and disk alarms, sized from the spec's limit and volume."""
    return [
        "# Publishers block at this mark, well below the container's memory limit (Erlang's GC needs headroom).",
        f"vm_memory_high_watermark.absolute = {spec.memory_high_watermark_mib}MiB",
        f"disk_free_limit.absolute = {disk_free_limit_mib(spec)}MiB",
    ]


def queue_type_settings(spec: RabbitMQSpec) -> list[str]:
    """Quorum as the node-wide default, only where the version reads the key (empty otherwise)."""
    if spec.default_queue_type == "quorum" and supports_node_default_queue_type(spec):
        return [
            "# Queues declared without x-queue-type become quorum queues (replicated, Raft).",
            "default_queue_type = quorum",
        ]
    return []


def log_settings(viewer: str) -> list[str]:
    return [
        f"# Logs go to standard output ({viewer}); a file inside the container would only grow.",
        "log.console = true",
        "log.console.level = info",
        "log.file = false",
    ]


def _blocks(*blocks: list[str]) -> list[str]:
    """Non-empty blocks separated by one blank line."""
    lines: list[str] = []
    for block in blocks:
        if block:
            lines += [*([""] if lines else []), *block]
    return lines


def render_rabbitmq_conf(spec: RabbitMQSpec) -> str:
    """rabbitmq.conf in the new (sysctl) format; only keys that RabbitMQ `spec.version` reads."""
    lines = _blocks(
        [f"# Rendered by banyan for RabbitMQ {spec.version}; every key below is one that version reads."],
        [
            "# Every node lists every node: a fresh node joins whichever listed peer is up, so start order is free.",
            "cluster_formation.peer_discovery_backend = classic_config",
            *(f"cluster_formation.classic_config.nodes.{i} = {n}" for i, n in enumerate(node_names(spec), start=1)),
            f"cluster_partition_handling = {partition_handling(spec.nodes)}",
        ],
        [f"listeners.tcp.default = {spec.port}", f"management.tcp.port = {spec.management_port}"],
        guest_settings("RABBITMQ_DEFAULT_USER / RABBITMQ_DEFAULT_PASS"),
        alarm_settings(spec),
        queue_type_settings(spec),
        log_settings("docker logs"),
    )
    return "\n".join(lines) + "\n"


def render_operator_config(spec: RabbitMQSpec) -> str:
    """`spec.rabbitmq.additionalConfig` of a RabbitmqCluster: the Docker file's broker settings that apply under
    the RabbitMQ Cluster Operator. The operator owns peer discovery (Kubernetes API) and the listeners (5672,
    15672); this text lands in conf.d/90-userDefinedConfiguration.conf, after the operator's defaults
    (10-operatorDefaults.conf, e.g. its 2GB disk limit and pause_minority) and the image's own conf.d, so every
    key here wins."""
    lines = _blocks(
        [f"# Rendered by banyan for RabbitMQ {spec.version}; every key below is one that version reads."],
        [
            "# pause_minority needs a majority to exist; 1 node: nothing to pause, 2 nodes: autoheal.",
            f"cluster_partition_handling = {partition_handling(spec.nodes)}",
        ],
        guest_settings("the default-user Secret (conf.d/11-default_user.conf)"),
        alarm_settings(spec),
        queue_type_settings(spec),
        log_settings("kubectl logs"),
    )
    return "\n".join(lines) + "\n"


def render_enabled_plugins(spec: RabbitMQSpec) -> str:
    """An Erlang term list. Classic-config peer discovery is built into the broker and needs no plugin."""
    del spec  # the same plugins for every version and size today; kept for a uniform renderer signature
    return f"[{','.join(_PLUGINS)}].\n"


def render_entrypoint() -> str:
    """Writes the Erlang cookie from the environment to $HOME/.erlang.cookie (0400, owned by the broker's user),
    then hands over to the image's own entrypoint.

    Erlang refuses a cookie file that anyone but its owner can read, and a file shipped into the container
    arrives owned by root with mode 0644, so the cookie is written here at every start instead. The variable is
    removed before the broker starts, so its environment (and every child process) does not carry it.
    """
    return f"""#!/bin/sh
set -eu
if [ -z "${{{COOKIE_ENV}:-}}" ]; then
    echo "banyan: {COOKIE_ENV} is not set; refusing to start a node without the cluster's Erlang cookie" >&2
    exit 1
fi
cookie="${{HOME:-{DATA_DIR}}}/.erlang.cookie"
tmp="$cookie.banyan.$$"
umask 077
printf '%s' "${COOKIE_ENV}" > "$tmp"
chmod 0400 "$tmp"
if [ "$(id -u)" = 0 ]; then
    chown rabbitmq:rabbitmq "$tmp"
fi
mv -f "$tmp" "$cookie"
unset {COOKIE_ENV}
exec docker-entrypoint.sh "$@"
"""
