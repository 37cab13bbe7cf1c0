"""RabbitMQ's configuration, rendered from the spec alone: Docker nodes' files and the operator's additionalConfig."""

from __future__ import annotations

from shlex import quote as shlex_quote

from components.shell import drop_privileges
from model.spec import RabbitMQSpec

CONF_PATH = "/etc/rabbitmq/rabbitmq.conf"
PLUGINS_PATH = "/etc/rabbitmq/enabled_plugins"
DATA_DIR = "/var/lib/rabbitmq"
ENTRYPOINT_PATH = "/usr/local/bin/banyan-rabbitmq-entrypoint.sh"
# Not RABBITMQ_ERLANG_COOKIE: RabbitMQ deprecates that variable and its CLI warns on every call while it is set.
COOKIE_ENV = "BANYAN_ERLANG_COOKIE"
# The users the entrypoint reconciles at every start: the administrator (operators, the management UI) and the
# applications' own user (its vhost only, no management tags).
ADMIN_USER_ENV = "BANYAN_RABBITMQ_ADMIN_USER"
ADMIN_PASSWORD_ENV = "BANYAN_RABBITMQ_ADMIN_PASSWORD"
APP_USER_ENV = "BANYAN_RABBITMQ_APP_USER"
APP_PASSWORD_ENV = "BANYAN_RABBITMQ_APP_PASSWORD"
# The vhost the applications use (the AMQP URLs name it).
APP_VHOST = "/"
# How long the reconciliation waits for its node to boot (and to join its peers) before it gives up; the
# health check, which authenticates as the application, stays red until it has run.
RECONCILE_WAIT_S = 600
# The official image's own conf.d would load after our rabbitmq.conf and win (it sets loopback_users.guest = false);
# pointing RABBITMQ_CONFIG_FILES at a path that never exists leaves our file the only configuration.
NO_EXTRA_CONFIG_FILES = "/etc/rabbitmq/banyan-no-conf.d"

# The node-wide `default_queue_type` key arrived in a 3.13 patch release (3.13.3); 3.12 and older reject it.
_NODE_DEFAULT_QUEUE_TYPE_SINCE = (3, 13)
# 4.3 removed Mnesia and with it partition handling: Khepri (Raft) recovers partitions by itself, and the
# cluster_partition_handling keys are accepted without effect (4.3.0 release notes ask to remove them).
_PARTITION_HANDLING_UNTIL = (4, 3)
# The image's own enabled_plugins (management, prometheus) is replaced by this file: both must stay listed.
_PLUGINS = ("rabbitmq_management", "rabbitmq_prometheus")


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


def reads_partition_handling(spec: RabbitMQSpec) -> bool:
    return version(spec) < _PARTITION_HANDLING_UNTIL


def partition_settings(spec: RabbitMQSpec, comment: str | None = None) -> list[str]:
    """cluster_partition_handling where the version still reads it (before 4.3)."""
    if not reads_partition_handling(spec):
        return []
    return [*([comment] if comment else []), f"cluster_partition_handling = {partition_handling(spec.nodes)}"]


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
            *partition_settings(spec),
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
        partition_settings(spec, "# pause_minority needs a majority to exist; 1 node: nothing to pause, "
                                 "2 nodes: autoheal."),
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
    """The node's entrypoint: it owns the start, so it needs only RabbitMQ's own scripts (the official image's,
    or Debian's under /usr/lib/rabbitmq/bin) and runs the same everywhere.

    - Writes the Erlang cookie from the environment to $HOME/.erlang.cookie (0400, the broker's user) at every
      start: Erlang refuses a cookie anyone else can read, and an uploaded file arrives root-owned, 0644.
    - Drops from root to the rabbitmq user and execs `rabbitmq-server` with the cookie variable removed.
    - Beside it, once the node has booted, reconciles the users (users are cluster-wide, and every node doing
      it is idempotent): the administrator and the application user with the passwords of this deployment,
      their tags and permissions, and no `guest`. RABBITMQ_DEFAULT_USER only acts on an empty database, so a
      retained volume under new passwords (destroy then up) would otherwise keep the old ones.
    - Then enables every stable feature flag (`rabbitmqctl enable_feature_flag all`, as the Cluster Operator's
      autoEnableAllFeatureFlags does): what the next series requires before an upgrade (README, upgrading).
    """
    return f"""#!/bin/sh
set -eu
log() {{ printf 'banyan: %s\\n' "$*" >&2; }}
for var in {COOKIE_ENV} {ADMIN_USER_ENV} {ADMIN_PASSWORD_ENV} {APP_USER_ENV} {APP_PASSWORD_ENV}; do
    if eval "[ -z \\"\\${{$var:-}}\\" ]"; then
        log "$var is not set; refusing to start a node without it"
        exit 1
    fi
done
# RabbitMQ's own scripts rather than Debian's /usr/sbin wrappers, which would send the node's output to files.
if [ "$(command -v rabbitmq-server || :)" = /usr/sbin/rabbitmq-server ] && [ -d /usr/lib/rabbitmq/bin ]; then
    PATH="/usr/lib/rabbitmq/bin:$PATH"
    export PATH
fi
export HOME="${{HOME:-{DATA_DIR}}}"

{drop_privileges("rabbitmq", log="log")}
cookie="$HOME/.erlang.cookie"
tmp="$cookie.banyan.$$"
(umask 077 && printf '%s' "${COOKIE_ENV}" > "$tmp")
chmod 0400 "$tmp"
if [ "$(id -u)" = 0 ]; then
    chown rabbitmq:rabbitmq "$tmp"
    # A new volume takes the image directory's owner; one from elsewhere may not.
    find "$HOME" -maxdepth 1 ! -user rabbitmq -exec chown rabbitmq:rabbitmq {{}} +
fi
mv -f "$tmp" "$cookie"
unset {COOKIE_ENV}

ctl() {{ $drop rabbitmqctl -q "$@"; }}
# Passwords go to the CLI on standard input: on an error it prints every argument it was given.
with_password() {{ password=$1; shift; printf '%s' "$password" | ctl "$@"; }}

users() {{ ctl list_users --no-table-headers | cut -f1; }}

ensure_user() {{
    user=$1 password=$2 tags=$3
    if ! with_password "$password" authenticate_user "$user" >/dev/null 2>&1; then
        if users | grep -qx "$user"; then
            with_password "$password" change_password "$user" || return 1
        else
            # Another node may create it at the same moment: then it exists and only its password is set.
            with_password "$password" add_user "$user" 2>/dev/null \\
                || with_password "$password" change_password "$user" || return 1
        fi
    fi
    ctl set_user_tags "$user" $tags || return 1
    ctl set_permissions -p {shlex_quote(APP_VHOST)} "$user" '.*' '.*' '.*' || return 1
}}

# Every step checks its own result: `set -e` does not apply inside a function called from `||`.
reconcile() {{
    # The CLI cannot reach a node that is still starting its VM: retry until the node answers, bounded.
    deadline=$(( $(date +%s) + {RECONCILE_WAIT_S} ))
    until ctl await_startup --timeout 30 >/dev/null 2>&1; do
        if [ "$(date +%s)" -ge "$deadline" ]; then
            log "the node did not finish booting within {RECONCILE_WAIT_S}s"
            return 1
        fi
        sleep 2
    done
    ensure_user "${ADMIN_USER_ENV}" "${ADMIN_PASSWORD_ENV}" administrator || return 1
    ensure_user "${APP_USER_ENV}" "${APP_PASSWORD_ENV}" "" || return 1
    if users | grep -qx guest; then ctl delete_user guest || return 1; fi
    log "users reconciled"
    # Every stable feature flag on: an upgrade starts only on a cluster that enabled its predecessor's flags
    # (4.x needs all of 3.13's, 4.3 all of 4.2's, khepri_db among them). A flag an older peer lacks (a rolling
    # upgrade half done) is refused and tried again at the next start; the last node upgraded enables it.
    if ! ctl enable_feature_flag all >/dev/null 2>&1; then
        log "not every feature flag could be enabled yet (a peer of an older version?); the next start tries again"
    fi
}}

# A node whose users could not be reconciled stops (after exec, $$ is the broker): the restart policy tries
# again, rather than a node that runs without the credentials its clients hold.
( reconcile || {{ log "reconciling the users failed; stopping the node"; kill -TERM $$; }} ) &

exec env -u {ADMIN_PASSWORD_ENV} $drop rabbitmq-server "$@"
"""
