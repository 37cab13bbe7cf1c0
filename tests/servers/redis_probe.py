"""A Redis client run inside a test host's network namespace for tests/servers/test_redis_servers.py.

`python redis_probe.py <command> '<json args>'` prints JSON (poll: one JSON line per write). It resolves the
nodes' host names through the host's /etc/hosts, as an application container would through Docker's DNS.
The password comes from REDISCLI_AUTH, never from argv, and the user from REDIS_USERNAME (unset: Redis'
`default`, the administrator). Only redis-py and the standard library: it runs outside pytest.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry

TIMEOUT_S = 1.0
WAIT_MS = 3000


def _password() -> str:
    return os.environ["REDISCLI_AUTH"]


def _username() -> str | None:
    return os.environ.get("REDIS_USERNAME") or None


def _auth() -> list[str]:
    user = _username()
    return ["AUTH", user, _password()] if user else ["AUTH", _password()]


def _split(endpoint: str) -> tuple[str, int]:
    host, _, port = endpoint.rpartition(":")
    return host, int(port)


def _resp(*args: str) -> bytes:
    out = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _reply(stream: Any) -> Any:
    """One RESP2 reply: errors come back as "-ERR ..." text, not raised."""
    line = stream.readline().decode().rstrip("\r\n")
    kind, rest = line[:1], line[1:]
    if kind == "$":
        if int(rest) < 0:
            return None
        data = stream.read(int(rest) + 2)[:-2]
        return data.decode()
    if kind == "*":
        return None if int(rest) < 0 else [_reply(stream) for _ in range(int(rest))]
    if kind == ":":
        return int(rest)
    return line


def _session(endpoint: str, commands: list[list[str]]) -> list[Any]:
    """The replies on one plain connection: no client library deciding what to send first."""
    with socket.create_connection(_split(endpoint), timeout=TIMEOUT_S) as sock, sock.makefile("rb") as stream:
        replies = []
        for command in commands:
            sock.sendall(_resp(*command))
            replies.append(_reply(stream))
        return replies


def auth(args: dict[str, Any]) -> dict[str, Any]:
    """What each node answers without a password, with a wrong one, then with the right one."""
    out: dict[str, Any] = {}
    for endpoint in args["nodes"]:
        replies = _session(endpoint, [
            ["PING"], ["SET", "probe:unauth", "1"], ["CLUSTER", "NODES"],
            ["AUTH", "not-the-password"], ["PING"],
            ["AUTH", _password()], ["PING"],
        ])
        keys = ["ping", "set", "cluster_nodes", "wrong_auth", "ping_after_wrong", "auth", "ping_after_auth"]
        out[endpoint] = dict(zip(keys, replies, strict=True))
    return out


# What the applications' ACL user may not do, each sent on its own: reconfigure, debug or stop a node, wipe the
# data, change the cluster, read the ACLs. The node ids are filled in by the caller (FORGET needs a real one).
REFUSED = {
    "config_set": ["CONFIG", "SET", "maxmemory-policy", "noeviction"],
    "config_get": ["CONFIG", "GET", "maxmemory"],
    "flushall": ["FLUSHALL"],
    "flushdb": ["FLUSHDB"],
    "debug": ["DEBUG", "SLEEP", "0"],
    "shutdown": ["SHUTDOWN", "NOSAVE"],
    "cluster_reset": ["CLUSTER", "RESET", "SOFT"],
    "cluster_forget": ["CLUSTER", "FORGET", "{peer}"],
    "cluster_meet": ["CLUSTER", "MEET", "127.0.0.1", "1"],
    "cluster_failover": ["CLUSTER", "FAILOVER", "FORCE"],
    "replicaof": ["REPLICAOF", "NO", "ONE"],
    "keys": ["KEYS", "*"],
    "acl_list": ["ACL", "LIST"],
}
# What a cluster client needs, and must keep.
ALLOWED = {
    "ping": ["PING"],
    "cluster_slots": ["CLUSTER", "SLOTS"],
    "cluster_nodes": ["CLUSTER", "NODES"],
    "info": ["INFO", "server"],
    "whoami": ["ACL", "WHOAMI"],
}


def acl(args: dict[str, Any]) -> dict[str, Any]:
    """As the user of the environment, on one plain connection per node: AUTH, then every REFUSED and ALLOWED
    command; and whether that password also opens the `default` user (it must not)."""
    out: dict[str, Any] = {}
    for endpoint in args["nodes"]:
        names = ["auth", *REFUSED, *ALLOWED]
        commands = [_auth(), *([part.replace("{peer}", args["peer"]) for part in c] for c in REFUSED.values()),
                    *ALLOWED.values()]
        got = dict(zip(names, _session(endpoint, commands), strict=True))
        (got["as_default"],) = _session(endpoint, [["AUTH", _password()]])
        out[endpoint] = got
    return out


def _info(text: str) -> dict[str, str]:
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line and not line.startswith("#"))


def state(args: dict[str, Any]) -> dict[str, Any]:
    """Each node's own view: CLUSTER NODES / INFO / SLOTS and INFO replication (or why it did not answer)."""
    out: dict[str, Any] = {}
    for endpoint in args["nodes"]:
        try:
            ok, nodes, info, slots, replication = _session(endpoint, [
                ["AUTH", _password()], ["CLUSTER", "NODES"], ["CLUSTER", "INFO"], ["CLUSTER", "SLOTS"],
                ["INFO", "replication"],
            ])
        except OSError as err:
            out[endpoint] = {"error": f"{type(err).__name__}: {err}"}
            continue
        if ok != "+OK":
            out[endpoint] = {"error": f"AUTH: {ok}"}
            continue
        out[endpoint] = {
            "cluster_nodes": nodes,
            "cluster_info": _info(info),
            "cluster_slots": slots,
            "replication": _info(replication),
        }
    return out


def _cluster(startup: list[str], timeout_s: float = TIMEOUT_S) -> RedisCluster:
    # No retries inside the client: one call is one write attempt, so failed writes can be counted.
    return RedisCluster(
        startup_nodes=[ClusterNode(*_split(e)) for e in startup],  # type: ignore[no-untyped-call]
        username=_username(),
        password=_password(),
        decode_responses=True,
        socket_timeout=timeout_s,
        socket_connect_timeout=TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),
        require_full_coverage=False,
    )


def write(args: dict[str, Any]) -> dict[str, Any]:
    """SET the items through the cluster, then WAIT (up to WAIT_MS) until each written master's replicas have
    them; a replica that does not replicate answers 0, not a timeout."""
    rc = _cluster(args["startup"], timeout_s=2 * WAIT_MS / 1000)
    masters: dict[str, Any] = {}
    for key, value in args["items"].items():
        rc.set(key, value)
        node = rc.get_node_from_key(key)  # type: ignore[no-untyped-call]
        masters[node.name] = node
    acked = {name: rc.execute_command("WAIT", args["replicas"], WAIT_MS, target_nodes=node)  # type: ignore[no-untyped-call]
             for name, node in masters.items()}
    rc.close()
    return {"acked": acked}


def read(args: dict[str, Any]) -> dict[str, Any]:
    rc = _cluster(args["startup"])
    values = {key: rc.get(key) for key in args["keys"]}
    rc.close()
    return {"values": values}


def poll(args: dict[str, Any]) -> None:
    """Write `key` every `interval_s` until the stop file appears: one JSON line per attempt, with monotonic
    times (one clock for every namespace) and which node took a successful write."""
    rc = _cluster(args["startup"])
    stop = Path(args["stop"])
    deadline = time.monotonic() + args["deadline_s"]
    n = 0
    while not stop.exists() and time.monotonic() < deadline:
        n += 1
        t0 = time.monotonic()
        line: dict[str, Any] = {"n": n, "t0": t0}
        try:
            rc.set(args["key"], str(n))
            node = rc.get_node_from_key(args["key"])  # type: ignore[no-untyped-call]
            line.update(ok=True, node=node.name)
        except (redis.RedisError, OSError) as err:
            line.update(ok=False, err=f"{type(err).__name__}: {err}"[:200])
        line["t1"] = time.monotonic()
        print(json.dumps(line), flush=True)
        time.sleep(args["interval_s"])
    rc.close()


def read_poll_log(path: Path) -> list[dict[str, Any]]:
    """The attempts `poll` has logged so far, read while it runs: its last line may be half-written (the
    test reads between the writer's writes), so only lines ended by a newline count; the rest is read
    next time. Lines not starting with "{" are the writer's stderr (warnings), not attempts."""
    if not path.exists():
        return []
    data = path.read_bytes()
    complete = data[: data.rfind(b"\n") + 1].decode(errors="replace")
    return [json.loads(line) for line in complete.splitlines() if line.startswith("{")]


def main() -> None:
    command, raw = sys.argv[1], sys.argv[2]
    args = json.loads(raw)
    if command == "poll":
        poll(args)
        return
    handlers = {"auth": auth, "state": state, "write": write, "read": read, "acl": acl}
    print(json.dumps(handlers[command](args)))


if __name__ == "__main__":
    main()
