"""Redis files rendered from the spec: redis.conf per node, the start script and the cluster-creation script."""

from __future__ import annotations

import re
from collections.abc import Sequence

from components.shell import drop_privileges
from model.spec import RedisSpec

CONF_DIR = "/usr/local/etc/redis"
CONF_PATH = f"{CONF_DIR}/redis.conf"
START_PATH = f"{CONF_DIR}/start.sh"
CREATE_PATH = f"{CONF_DIR}/create-cluster.sh"
# The official image's VOLUME and WORKDIR; the named volume goes here.
DATA_DIR = "/data"
PASSWORD_ENV = "REDIS_PASSWORD"
# The applications' own ACL user and its password (the start script defines the user from the environment).
# The `default` user stays the administrator (requirepass): the creation step, the health checks and the
# replicas (masterauth) authenticate as it, the applications never do.
APP_USER = "banyan-app"
APP_PASSWORD_ENV = "REDIS_APP_PASSWORD"
# Everything but what can reconfigure, stop, wipe or reshape a node: @admin (CONFIG, DEBUG, SHUTDOWN, the
# cluster-changing CLUSTER subcommands MEET/ADDSLOTS/RESET/FORGET/FAILOVER/SETSLOT, REPLICAOF, MONITOR, ACL)
# and @dangerous (also FLUSHALL, FLUSHDB, SWAPDB, KEYS, MIGRATE, RESTORE, SORT, INFO). INFO is given back: it
# only reads, and clients check it before their first command (ioredis' ready check). Keys and Pub/Sub
# channels are all the applications'.
APP_ACL = "~* &* +@all -@admin -@dangerous +info"
# Redis 6.2 has no per-subcommand categories: -@admin there blocks all of CLUSTER and CLIENT, so the
# subcommands cluster clients need (slot map, key slot) and connection naming are allowed by name. From 7.0
# they are outside @admin/@dangerous already.
SUBCOMMAND_CATEGORIES_SINCE = (7, 0)
APP_ACL_BEFORE_SUBCOMMAND_CATEGORIES = (
    "+cluster|info +cluster|keyslot +cluster|nodes +cluster|slots +client|getname +client|id +client|setname")
# The monitoring part's Redis exporter (banyan:monitoring.enabled): its own ACL user, defined by the start script
# like the applications' and only where the part is on (a stack without it renders the nodes as before).
MONITOR_USER = "banyan-monitor"
MONITOR_PASSWORD_ENV = "REDIS_MONITOR_PASSWORD"
# What oliver006/redis_exporter v1.45.0 (components/monitoring/images.py) sends a node per scrape with the flags
# components/monitoring/config.py redis_exporter_args passes (no key checks, no client list, no Lua script, no
# ping-on-connect, no database in the address, so no SELECT), from exporter/exporter.go scrapeRedisHost:
#   CLIENT SETNAME redis_exporter  (--set-client-name, on by default)
#   INFO ALL (INFO where that fails)
#   CLUSTER INFO                   (only where INFO says cluster_enabled:1: monitor_acl adds it in cluster mode)
#   LATENCY LATEST                 (exporter/latency.go)
#   SLOWLOG LEN, SLOWLOG GET 1     (exporter/slowlog.go)
# plus AUTH, which every user may send. Not given, so not a key, a value or a password: no key pattern, no channel;
# CONFIG GET (its `*` answers requirepass and masterauth, the administrator's password: the exporter is passed
# --config-command=- instead and sends no CONFIG), and SLOWLOG GET (it answers the arguments of the slowest recent
# commands, keys and values: refused, the exporter then only lacks redis_slowlog_last_id and
# redis_last_slow_execution_duration_seconds, which no rule reads). `reset` first (the user line), so these are all.
MONITOR_ACL = "resetchannels -@all +client|setname +info +latency|latest +slowlog|len"
MONITOR_ACL_CLUSTER = "+cluster|info"
# redis-cli reads its password from this variable, which keeps it off every command line.
CLI_AUTH_ENV = "REDISCLI_AUTH"
CLUSTER_SLOTS = 16384

MIN_VERSION = (6, 2)
# Redis 7.0 added cluster-announce-hostname, cluster-preferred-endpoint-type, cluster-port and
# optional bind addresses ("-::*").
HOSTNAMES_SINCE = (7, 0)

# Failure detection after 5 s instead of the default 15 s: on one Docker host a silent peer is a dead
# container, not a flaky WAN link, and a replica should take over while clients are still retrying.
NODE_TIMEOUT_MS = 5000
# Rate-limit counters and cached query results share one keyspace. allkeys-lfu evicts the least
# *frequently* used keys: a client's counter is touched on every request, so it stays while one-off
# cached results go first, and a scan of cold keys cannot push the hot ones out (as it can under LRU).
# "allkeys" rather than "volatile-*": with no evictable key a volatile policy refuses writes (OOM),
# and a rate limiter that cannot INCR fails every request. noeviction would do the same at the limit.
MAXMEMORY_POLICY = "allkeys-lfu"
# How long the start script waits for peers' names to resolve after a host restart, when every
# container comes back at once; after that a stale address is kept and gossip corrects it.
RESOLVE_TIMEOUT_S = 30
# Bounds of the cluster-creation script: nodes answering, then the cluster settling.
READY_TIMEOUT_S = 120
SETTLE_TIMEOUT_S = 60

_HOSTNAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")
_VERSION = re.compile(r"^(\d+)\.(\d+)")


def version(spec: RedisSpec) -> tuple[int, int]:
    """The major.minor the file is written for; older than MIN_VERSION is refused."""
    match = _VERSION.match(spec.version)
    if not match:
        raise ValueError(f"redis version {spec.version!r}: expected major.minor, e.g. '7.4'")
    parsed = (int(match.group(1)), int(match.group(2)))
    if parsed < MIN_VERSION:
        raise ValueError(f"redis version {spec.version}: supported from {MIN_VERSION[0]}.{MIN_VERSION[1]}")
    return parsed


def node_endpoints(spec: RedisSpec) -> tuple[str, ...]:
    """host:port of every node, in instance order (the first `masters` become masters at creation)."""
    return tuple(f"{host}:{spec.port}" for host in spec.instance_names)


def health_test(spec: RedisSpec) -> tuple[str, ...]:
    """An authenticated PING (password from REDISCLI_AUTH). redis-cli exits 0 even on a NOAUTH error
    reply, so the answer itself is checked."""
    return ("CMD-SHELL", f"redis-cli -p {spec.port} ping | grep -qx PONG")


def render_redis_conf(spec: RedisSpec, hostname: str | None = None, *, data_dir: str = DATA_DIR) -> str:
    """redis.conf for one node. `hostname` is the node's name on the network (its container name); a
    cluster announces it. No password here: the start script passes it from the environment."""
    ver = version(spec)
    cluster = spec.mode == "cluster"
    hostnames = cluster and ver >= HOSTNAMES_SINCE
    if hostnames and (hostname is None or not _HOSTNAME.match(hostname)):
        raise ValueError(f"a cluster node needs a valid host name to announce, got {hostname!r}")
    default_bus = spec.port + 10_000
    if cluster and spec.bus_port != default_bus and ver < HOSTNAMES_SINCE:
        raise ValueError(f"redis {spec.version} always uses port + 10000 for the cluster bus ({default_bus})")

    lines = [
        f"# Rendered by banyan for redis {spec.version} ({_shape(spec)}). The password is not in this file.",
        f"port {spec.port}",
        # Every interface: other containers connect over the platform network. "-::*" skips IPv6 when
        # the network has none instead of failing to start.
        "bind * -::*" if ver >= HOSTNAMES_SINCE else "bind 0.0.0.0",
        # A safety net: should the password ever be missing, only loopback clients get in.
        "protected-mode yes",
        f"dir {data_dir}",
        "",
        f"maxmemory {spec.maxmemory_mib}mb",
        f"maxmemory-policy {MAXMEMORY_POLICY}",
        "",
    ]
    if spec.persistence:
        lines += [
            # AOF alone: a restart keeps at most the last second of writes (counters included).
            "appendonly yes",
            "appendfsync everysec",
        ]
    else:
        lines += ["appendonly no"]
    # No periodic RDB snapshots: AOF is the persistence when there is any, and each snapshot forks a
    # copy-on-write child that competes with the data for the container's memory limit.
    lines += ['save ""']
    if cluster:
        lines += [
            "",
            "cluster-enabled yes",
            # Relative to `dir`: the membership file lives on the data volume and survives the container.
            "cluster-config-file nodes.conf",
            f"cluster-node-timeout {NODE_TIMEOUT_MS}",
            # A cache should keep serving the healthy shards while one shard has no reachable master.
            "cluster-require-full-coverage no",
        ]
        if spec.bus_port != default_bus:
            lines.append(f"cluster-port {spec.bus_port}")
        if hostnames:
            lines += [
                # Clients are sent (MOVED, CLUSTER SLOTS/SHARDS) the container name, which Docker's DNS
                # resolves to the current address, not the address the node had when it last wrote
                # nodes.conf. The bus between nodes still uses IPs: the start script refreshes them.
                f"cluster-announce-hostname {hostname}",
                "cluster-preferred-endpoint-type hostname",
            ]
    return "\n".join(lines) + "\n"


def render_start_script(
    spec: RedisSpec,
    *,
    conf_path: str = CONF_PATH,
    data_dir: str = DATA_DIR,
    resolve_timeout_s: int = RESOLVE_TIMEOUT_S,
    monitor: bool = False,
) -> str:
    """The node's entrypoint: checks the password, refreshes peer addresses (cluster), then execs
    redis-server with requirepass/masterauth read from stdin, so neither a file nor argv holds them.
    `monitor`: the monitoring part is on, and the script also defines its exporter's user (MONITOR_USER).

    Arguments given to the script go to redis-server after the config file.
    """
    ver = version(spec)
    cluster = spec.mode == "cluster"
    secrets = [f'requirepass "${PASSWORD_ENV}"', app_user_directive(spec)]
    if monitor:
        secrets.append(monitor_user_directive(spec))
    if cluster:
        # Replicas authenticate to their master with the same password.
        secrets.append(f'masterauth "${PASSWORD_ENV}"')
    refresh = cluster and ver >= HOSTNAMES_SINCE
    parts = [
        _START_HEAD.format(conf=conf_path, data=data_dir, env=PASSWORD_ENV),
        _CHECK_PASSWORD.format(env=APP_PASSWORD_ENV, who="the applications'"),
        _CHECK_PASSWORD.format(env=MONITOR_PASSWORD_ENV, who="the monitoring exporter's") if monitor else "",
        _REFRESH.format(timeout=resolve_timeout_s) if refresh else "",
        _START_TAIL.format(secrets="\n".join(secrets), drop=drop_privileges("redis", log="echo >&2 start.sh:")),
    ]
    return "".join(parts)


def app_acl(spec: RedisSpec) -> str:
    """The application user's ACL rules (after `on` and its password)."""
    if version(spec) < SUBCOMMAND_CATEGORIES_SINCE:
        return f"{APP_ACL} {APP_ACL_BEFORE_SUBCOMMAND_CATEGORIES}"
    return APP_ACL


def app_user_directive(spec: RedisSpec) -> str:
    """The `user` line the start script hands redis-server on stdin, the password expanded from the
    environment there: `reset` first, so the rules are exactly these whatever ran before."""
    return f'user {APP_USER} reset on >"${APP_PASSWORD_ENV}" {app_acl(spec)}'


def monitor_acl(spec: RedisSpec) -> str:
    """The monitoring exporter's user's rules (after `on` and its password): MONITOR_ACL, and CLUSTER INFO where
    the nodes are a cluster (the exporter sends it nowhere else)."""
    return f"{MONITOR_ACL} {MONITOR_ACL_CLUSTER}" if spec.mode == "cluster" else MONITOR_ACL


def monitor_user_directive(spec: RedisSpec) -> str:
    """The exporter's `user` line, like app_user_directive's."""
    return f'user {MONITOR_USER} reset on >"${MONITOR_PASSWORD_ENV}" {monitor_acl(spec)}'


_CHECK_PASSWORD = r"""
case "${{{env}:-}}" in
  "") echo "start.sh: {env} is empty; refusing to start a node without {who} password" >&2; exit 64 ;;
  *[!A-Za-z0-9._~-]*) echo "start.sh: {env} may only hold A-Z a-z 0-9 . _ ~ -" >&2; exit 64 ;;
esac
"""

_START_HEAD = r"""#!/bin/sh
# Starts one Redis node with its password taken from ${env}: not in a file, not on a command line.
set -eu
conf="{conf}"
data="{data}"

case "${{{env}:-}}" in
  "") echo "start.sh: {env} is empty; refusing to start a node without a password" >&2; exit 64 ;;
  *[!A-Za-z0-9._~-]*) echo "start.sh: {env} may only hold A-Z a-z 0-9 . _ ~ -" >&2; exit 64 ;;
esac
"""

# Docker gives a re-created or restarted container a new address. Clients follow host names, but
# each node reaches its peers by the IPs stored in nodes.conf; when every container comes back with a
# new address (host reboot), no node can reach any other. Before starting, each peer's announced host
# name (stored next to its address since Redis 7.0) is resolved again and its address rewritten; the
# first contact then updates the peers' view of this node too.
_REFRESH = r"""
refresh_peer_addresses() {{
  nodes="$data/nodes.conf"
  [ -s "$nodes" ] || return 0
  if ! command -v getent >/dev/null 2>&1; then
    echo "start.sh: no getent here; peer addresses stay as stored" >&2
    return 0
  fi
  deadline=$(( $(date +%s) + {timeout} ))
  fresh="$nodes.resolved"
  : > "$fresh"
  while read -r id addr rest; do
    hostport=${{addr%%,*}}
    extra=${{addr#"$hostport"}}
    host=${{extra#,}}
    host=${{host%%,*}}
    if [ "$id" = vars ] || [ -z "$host" ]; then
      printf '%s %s %s\n' "$id" "$addr" "$rest" >> "$fresh"
      continue
    fi
    old=${{hostport%@*}}
    old=${{old%:*}}
    new=""
    while :; do
      new=$(getent hosts "$host" | awk 'NR == 1 {{ print $1 }}') || new=""
      [ -n "$new" ] && break
      [ "$(date +%s)" -lt "$deadline" ] || break
      sleep 1
    done
    if [ -n "$new" ] && [ "$new" != "$old" ]; then
      echo "start.sh: $host is now at $new (nodes.conf had $old)" >&2
      hostport="$new:${{hostport##*:}}"
    fi
    printf '%s %s %s\n' "$id" "$hostport$extra" "$rest" >> "$fresh"
  done < "$nodes"
  # Renamed into place: a node that stops mid-rewrite keeps the old file whole (ownership is fixed below).
  chmod 0644 "$fresh"
  mv -f "$fresh" "$nodes"
}}
refresh_peer_addresses
"""

# The script owns the start on every image (the official one, or Debian's packages): as root it gives the
# data directory to the redis user and drops to it, as the official image's entrypoint would.
# "-" makes redis-server read more configuration from stdin (after the file), from the here-document.
_START_TAIL = r"""
if [ "$(id -u)" = 0 ]; then
  find "$data" ! -user redis -exec chown redis:redis {{}} +
fi
{drop}exec $drop redis-server "$conf" "$@" - <<EOF
{secrets}
EOF
"""


def render_cluster_create_script(
    spec: RedisSpec,
    nodes: Sequence[str] | None = None,
    *,
    ready_timeout_s: int = READY_TIMEOUT_S,
    settle_timeout_s: int = SETTLE_TIMEOUT_S,
) -> str:
    """The one-shot creation step. `nodes` (host:port) default to every instance of the spec.

    Exit 0: the cluster of all nodes serves all 16384 slots with `masters` masters and
    `replicas_per_master` replicas each, whether this run created it, found it, or grew it (empty nodes
    beside a healthy cluster join it: as masters with the slots rebalanced onto them, then as replicas).
    Otherwise exit 1.
    """
    if spec.mode != "cluster":
        raise ValueError("a standalone Redis has no cluster to create")
    endpoints = tuple(nodes) if nodes is not None else node_endpoints(spec)
    if len(endpoints) != spec.nodes:
        raise ValueError(f"{len(endpoints)} endpoints for a cluster of {spec.nodes} nodes")
    for endpoint in endpoints:
        host, _, port = endpoint.rpartition(":")
        if not host or not port.isdigit() or not re.match(r"^[A-Za-z0-9.:-]+$", host):
            raise ValueError(f"node endpoint {endpoint!r}: expected host:port")
    return _CREATE.format(
        nodes=" ".join(endpoints),
        count=spec.nodes,
        masters=spec.masters,
        replicas=spec.replicas_per_master,
        slots=CLUSTER_SLOTS,
        ready=ready_timeout_s,
        settle=settle_timeout_s,
        env=CLI_AUTH_ENV,
        shape=_shape(spec),
    )


def _shape(spec: RedisSpec) -> str:
    if spec.mode == "standalone":
        return "standalone"
    replicas = spec.replicas_per_master
    return f"cluster of {spec.nodes}: {spec.masters} masters with {replicas} replica{'' if replicas == 1 else 's'} each"


# CLUSTER MEET takes IP addresses only. redis-cli --cluster create resolves host names itself since 7.0
# (redis#10436; 6.2 fails with "Invalid node address"), so names are resolved here: the same script works
# for every supported version and the log shows which addresses were joined.
_CREATE = r"""#!/bin/sh
# Creates the Redis Cluster ({shape}) once, or grows it to that shape. Re-runs find it formed and change nothing.
set -eu
NODES="{nodes}"
COUNT={count}
MASTERS={masters}
REPLICAS={replicas}
SLOTS={slots}
READY_TIMEOUT_S={ready}
SETTLE_TIMEOUT_S={settle}

log() {{ echo "create-cluster: $*"; }}
fail() {{ echo "create-cluster: $*" >&2; exit 1; }}

[ -n "${{{env}:-}}" ] || fail "{env} is empty: the nodes require the cluster password"
export {env}

cli() {{
  node=$1
  shift
  redis-cli -h "${{node%:*}}" -p "${{node##*:}}" "$@"
}}
field() {{ printf '%s\n' "$2" | sed -n "s/^$1://p"; }}
now() {{ date +%s; }}

deadline=$(( $(now) + READY_TIMEOUT_S ))
for node in $NODES; do
  until [ "$(cli "$node" ping 2>/dev/null)" = PONG ]; do
    [ "$(now)" -lt "$deadline" ] || fail "$node did not answer an authenticated PING within ${{READY_TIMEOUT_S}}s"
    sleep 1
  done
done
log "all $COUNT nodes answer"

# Healthy, in every node's own view: all nodes known, all slots served, state ok, every link up (right
# after a restart a node reports ok until a node timeout has passed without its peers), and the roles
# settled: MASTERS masters holding slots, no master without slots (a replica whose role has not reached
# this node yet), REPLICAS replicas under each master.
healthy() {{
  want="$MASTERS 0 $(( MASTERS * REPLICAS )) 0 0"
  for node in $NODES; do
    info=$(cli "$node" cluster info 2>/dev/null | tr -d '\r')
    [ "$(field cluster_state "$info")" = ok ] || return 1
    [ "$(field cluster_slots_assigned "$info")" = "$SLOTS" ] || return 1
    [ "$(field cluster_slots_ok "$info")" = "$SLOTS" ] || return 1
    [ "$(field cluster_known_nodes "$info")" = "$COUNT" ] || return 1
    shape=$(cli "$node" cluster nodes 2>/dev/null | tr -d '\r' | awk -v want="$REPLICAS" '
      $3 ~ /fail|noaddr|handshake/ || $8 != "connected" {{ bad++ }}
      $3 ~ /master/ && NF >= 9 {{ masters[$1] = 1; m++ }}
      $3 ~ /master/ && NF < 9 {{ empty++ }}
      $3 ~ /slave/ {{ per[$4]++; r++ }}
      END {{
        for (id in masters) if (per[id] + 0 != want) uneven++
        print m + 0, empty + 0, r + 0, uneven + 0, bad + 0
      }}')
    [ "$shape" = "$want" ] || return 1
  done
}}

wait_healthy() {{
  limit=$(( $(now) + SETTLE_TIMEOUT_S ))
  until healthy; do
    [ "$(now)" -lt "$limit" ] || return 1
    sleep 1
  done
}}

report() {{
  for node in $NODES; do
    info=$(cli "$node" cluster info 2>/dev/null | tr -d '\r') || info=""
    echo "  $node: state=$(field cluster_state "$info") slots_assigned=$(field cluster_slots_assigned "$info") \
known_nodes=$(field cluster_known_nodes "$info")" >&2
  done
}}

empty=0
for node in $NODES; do
  info=$(cli "$node" cluster info | tr -d '\r')
  [ -n "$(field cluster_state "$info")" ] || fail "$node: no CLUSTER INFO (is it started with cluster-enabled yes?)"
  if [ "$(field cluster_known_nodes "$info")" = 1 ] && [ "$(field cluster_slots_assigned "$info")" = 0 ]; then
    empty=$(( empty + 1 ))
  fi
done

if [ "$empty" -eq 0 ]; then
  # Every node already belongs to a cluster: after a restart it may take a node timeout or two to
  # agree again, so wait (bounded) before judging.
  if wait_healthy; then
    log "cluster already formed: $COUNT nodes, $MASTERS masters, $REPLICAS replica(s) each, $SLOTS slots; nothing to do"
    exit 0
  fi
  report
  fail "the nodes belong to a cluster that is not healthy (see above); repair it with redis-cli --cluster check/fix"
fi
command -v getent >/dev/null 2>&1 || fail "getent is missing: cannot resolve the node names to addresses"
address() {{
  ip=$(getent hosts "${{1%:*}}" | awk 'NR == 1 {{ print $1 }}') || ip=""
  [ -n "$ip" ] || fail "cannot resolve ${{1%:*}}"
  echo "$ip:${{1##*:}}"
}}

if [ "$empty" -ne "$COUNT" ]; then
  # Growth: the nodes that hold state must be one healthy cluster (all slots served, every link up);
  # the empty ones join it, as masters while it has fewer than MASTERS (the slots are then rebalanced
  # onto them, keys moving with their slots), then as replicas of the master with the fewest. Nothing
  # is ever removed or reset here: a shrink is refused at preview.
  entry=""
  old=""
  new=""
  for node in $NODES; do
    info=$(cli "$node" cluster info | tr -d '\r')
    if [ "$(field cluster_known_nodes "$info")" = 1 ] && [ "$(field cluster_slots_assigned "$info")" = 0 ]; then
      new="$new $node"
    else
      old="$old $node"
      [ -n "$entry" ] || entry=$node
    fi
  done
  grown_from=$(( COUNT - empty ))
  ok=0
  limit=$(( $(now) + SETTLE_TIMEOUT_S ))
  while [ "$(now)" -lt "$limit" ]; do
    ok=1
    for node in $old; do
      info=$(cli "$node" cluster info 2>/dev/null | tr -d '\r')
      [ "$(field cluster_state "$info")" = ok ] && [ "$(field cluster_slots_ok "$info")" = "$SLOTS" ] \
        && [ "$(field cluster_known_nodes "$info")" = "$grown_from" ] || ok=0
    done
    [ "$ok" = 1 ] && break
    sleep 1
  done
  if [ "$ok" != 1 ]; then
    report
    fail "$empty of $COUNT nodes are empty and the others are not one healthy cluster of $grown_from nodes; \
repair it with redis-cli --cluster check/fix, then run this again"
  fi
  entry_addr=$(address "$entry")
  # The next choice counts this node: wait until the entry knows it (in the role given, if any).
  known() {{
    until cli "$entry" cluster nodes | tr -d '\r' | awk -v a="$1" -v r="${{2:-}}" \
        '$2 ~ "^"a"[@,]" && (r == "" || $3 ~ r) {{ f = 1 }} END {{ exit !f }}'; do
      [ "$(now)" -lt "$limit" ] || fail "$entry does not know $1${{2:+ as a $2}} after add-node"
      sleep 1
    done
  }}
  masters_now=$(cli "$entry" cluster nodes | tr -d '\r' | awk '$3 ~ /master/ {{ n++ }} END {{ print n + 0 }}')
  [ "$masters_now" -le "$MASTERS" ] || fail "the cluster has $masters_now masters, more than the $MASTERS wanted"
  # Masters first, and their slots, so that the replicas below can follow them.
  added_masters=0
  joined=""
  rest=""
  for node in $new; do
    if [ "$masters_now" -ge "$MASTERS" ]; then
      rest="$rest $node"
      continue
    fi
    addr=$(address "$node")
    log "adding $node ($addr) as a master"
    redis-cli --cluster add-node "$addr" "$entry_addr" || fail "redis-cli --cluster add-node $addr failed"
    masters_now=$(( masters_now + 1 ))
    added_masters=$(( added_masters + 1 ))
    joined="$joined $node"
    known "$addr"
  done
  if [ "$added_masters" -gt 0 ]; then
    # add-node returns before the gossip has spread: a slot only moves between nodes that know each other
    # and serve (a new node says CLUSTERDOWN until it has learnt the slot map), so wait for both.
    members=$(( grown_from + added_masters ))
    agreed() {{
      for node in $old $joined; do
        info=$(cli "$node" cluster info | tr -d '\r')
        [ "$(field cluster_known_nodes "$info")" = "$members" ] && [ "$(field cluster_state "$info")" = ok ] \
          || return 1
      done
      redis-cli --cluster check "$entry_addr" >/dev/null 2>&1
    }}
    until agreed; do
      [ "$(now)" -lt "$limit" ] || fail "the cluster did not agree after adding $added_masters master(s)"
      sleep 1
    done
    log "moving slots onto the $added_masters new master(s)"
    redis-cli --cluster rebalance "$entry_addr" --cluster-use-empty-masters --cluster-yes \
      || fail "redis-cli --cluster rebalance failed"
  fi
  for node in $rest; do
    addr=$(address "$node")
    # The master holding slots with the fewest replicas, in the entry's view.
    master=$(cli "$entry" cluster nodes | tr -d '\r' | awk '
      $3 ~ /master/ && NF >= 9 {{ masters[$1] = 1 }}
      $3 ~ /slave/ {{ per[$4]++ }}
      END {{
        for (id in masters) if (best == "" || per[id] + 0 < low) {{ best = id; low = per[id] + 0 }}
        print best
      }}')
    [ -n "$master" ] || fail "no master with slots to replicate"
    log "adding $node ($addr) as a replica of $master"
    redis-cli --cluster add-node "$addr" "$entry_addr" --cluster-slave --cluster-master-id "$master" \
      || fail "redis-cli --cluster add-node $addr as a replica failed"
    known "$addr" slave
  done
  if ! wait_healthy; then
    report
    fail "grown, but not every node reports all $SLOTS slots, state ok and $COUNT nodes within ${{SETTLE_TIMEOUT_S}}s"
  fi
  log "cluster grown from $grown_from to $COUNT nodes: $MASTERS masters, $REPLICAS replica(s) each, $SLOTS slots"
  exit 0
fi

addresses=""
for node in $NODES; do
  addresses="$addresses $(address "$node")"
done
log "creating the cluster from$addresses"
# shellcheck disable=SC2086 # one argument per address
redis-cli --cluster create $addresses --cluster-replicas "$REPLICAS" --cluster-yes \
  || fail "redis-cli --cluster create failed"

if ! wait_healthy; then
  report
  fail "created, but not every node reports all $SLOTS slots, state ok and $COUNT nodes within ${{SETTLE_TIMEOUT_S}}s"
fi
log "cluster formed: $COUNT nodes, $MASTERS masters, $REPLICAS replica(s) each, $SLOTS slots covered"
"""
