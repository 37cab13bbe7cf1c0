"""Redis Cluster on Debian's redis-server, booted from the exact files and env the dev stack ships.

Every node runs as its own host (redis-node-1 ...) through the rendered start.sh with its own /data; the
rendered create-cluster.sh runs on the host redis-cluster-create, as the one-shot container would. A client
host plays the application: it reaches the nodes by name through tests/servers/redis_probe.py (redis-py's
RedisCluster), following the host names the nodes announce, as the applications' own ACL user with the
credentials of the rendered REDIS_URL; the creation step and the health checks run as the administrator.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from redis.crc import key_slot

from components.redis.config import CLUSTER_SLOTS, CONF_DIR, CONF_PATH, CREATE_PATH, DATA_DIR, HOSTNAMES_SINCE
from testkit import RecordedResource, Rendering, unwrap
from testkit.netns import Host, Network, traversable, wait_until
from tests.helpers import env_of, uploads
from tests.servers.conftest import (
    container,
    install_uploads,
    rendered,
    report,
    require_binary,
    require_netns,
    server_versions,
)
from tests.servers.redis_probe import read_poll_log

pytestmark = pytest.mark.servers

PROBE = Path(__file__).with_name("redis_probe.py")
CREATE_NAME = "redis-cluster-create"
CLIENT_NAME = "redis-client"
# tier -> (masters, replicas per master), as the issue states them.
SHAPES = {"large": (3, 1), "medium": (3, 0)}
# Where the official image keeps its entrypoint (on PATH there and here).
STANDIN_DIR = "/usr/local/bin"
# A stand-in for the official redis image's docker-entrypoint.sh, which Debian does not ship. Like the
# image's: when asked to run redis-server as root, it gives /data to the redis user and re-runs itself as
# that user (gosu there, runuser here). The image uses `find .` from its WORKDIR /data; here the working
# directory is the test's, so the path is spelled out.
ENTRYPOINT_STANDIN = """#!/bin/sh
# Test stand-in for the redis image's docker-entrypoint.sh: drop root to the redis user (as gosu does there).
set -e
if [ "$1" = redis-server ] && [ "$(id -u)" = 0 ]; then
  find /data \\! -user redis -exec chown redis '{}' +
  exec runuser -u redis -- "$0" "$@"
fi
exec "$@"
"""
# Here creation takes seconds; the script's own bounds (minutes) are for slow Docker hosts.
CREATE_TIMEOUT_S = 45
# The failover bound: this many cluster-node-timeouts from the stop to the first successful write.
BOUND_TIMEOUTS = 5


@pytest.fixture(scope="module", autouse=True)
def _container_paths() -> Iterator[None]:
    """Bind mounts need their container paths (/data, /usr/local/etc/redis) to exist on the machine: the ones
    this module creates are removed again (only while empty, after every namespace is gone)."""
    created: list[Path] = []
    for path in (Path(DATA_DIR), Path(CONF_DIR)):
        while not path.exists():
            created.append(path)
            path = path.parent
    yield
    for path in created:
        with contextlib.suppress(OSError):
            path.rmdir()


@dataclass(frozen=True)
class Entry:
    """One line of CLUSTER NODES, with the node's host name taken from its address."""

    id: str
    name: str
    announced: str
    flags: frozenset[str]
    master: str
    epoch: int
    slots: frozenset[int]

    @property
    def role(self) -> str:
        return "master" if "master" in self.flags else "replica" if "slave" in self.flags else "?"


def _slots(tokens: list[str]) -> frozenset[int]:
    slots: set[int] = set()
    for token in tokens:
        if token.startswith("["):  # a slot being migrated: not served here yet
            continue
        low, _, high = token.partition("-")
        slots.update(range(int(low), int(high or low) + 1))
    return frozenset(slots)


@dataclass
class RedisStack:
    """The rendered nodes of one tier booted as hosts, plus the creation host and a client host."""

    tier: str
    net: Network
    rendering: Rendering
    names: list[str]
    port: int
    hosts: dict[str, Host]
    create: Host
    client: Host
    password: str
    # The applications' ACL user and password, from the REDIS_URL the stack gives the apps.
    app_user: str
    app_password: str
    node_timeout_ms: int
    created: subprocess.CompletedProcess[str] | None = None
    created_s: float = 0.0
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def endpoints(self) -> list[str]:
        return [f"{name}:{self.port}" for name in self.names]

    def node(self, name: str) -> RecordedResource:
        return container(self.rendering, name)

    def start(self, name: str) -> None:
        """The node's container entrypoint (start.sh), with the container's env and its own /data."""
        c = self.node(name)
        host = self.hosts[name]
        host.spawn(unwrap(c.inputs)["entrypoints"], binds=[CONF_DIR, DATA_DIR, STANDIN_DIR], env=env_of(c),
                   log=host.root / "redis.log")

    def healthy(self, name: str) -> bool:
        """The rendered container health check, run in the node's host with the node's env."""
        c = self.node(name)
        test = unwrap(c.inputs)["healthcheck"]["tests"]
        assert test[0] == "CMD-SHELL"
        return self.hosts[name].run(["/bin/sh", "-c", test[1]], env=env_of(c), check=False, timeout=10).returncode == 0

    def log(self, name: str, lines: int = 30) -> str:
        path = self.hosts[name].root / "redis.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def cli(self, name: str, *args: str) -> str:
        """redis-cli on the node's own host, authenticated through the node's REDISCLI_AUTH."""
        done = self.hosts[name].run(["redis-cli", "-p", str(self.port), *args], env=env_of(self.node(name)),
                                    check=False, timeout=10)
        return done.stdout.replace("\r", "")

    def run_create(self) -> subprocess.CompletedProcess[str]:
        """The one-shot creation container: its entrypoint, env and uploaded script on its own host."""
        c = container(self.rendering, CREATE_NAME)
        argv = unwrap(c.inputs)["entrypoints"]
        try:
            return self.create.run(argv, binds=[CONF_DIR], env=env_of(c), timeout=CREATE_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired as err:
            out = err.stdout.decode() if isinstance(err.stdout, bytes) else err.stdout or ""
            return subprocess.CompletedProcess(argv, -1, out, f"killed after {CREATE_TIMEOUT_S}s")

    @property
    def app_env(self) -> dict[str, str]:
        """What redis_probe.py needs to log in as the applications do."""
        return {"REDISCLI_AUTH": self.app_password, "REDIS_USERNAME": self.app_user}

    def probe(self, command: str, args: dict[str, Any], *, app: bool = False) -> Any:
        """redis_probe.py on the client host: as the applications' user (app=True) or as the administrator."""
        env = self.app_env if app else {"REDISCLI_AUTH": self.password}
        done = self.client.run([sys.executable, str(PROBE), command, json.dumps(args)], env=env, timeout=60)
        return json.loads(done.stdout)

    def views(self, names: list[str] | None = None) -> dict[str, dict[str, Any]]:
        """Each node's own view (CLUSTER NODES / INFO / SLOTS, INFO replication), by node name."""
        wanted = names if names is not None else self.names
        got = self.probe("state", {"nodes": [f"{n}:{self.port}" for n in wanted]})
        return {endpoint.rpartition(":")[0]: view for endpoint, view in got.items()}

    def topology(self, view: dict[str, Any]) -> dict[str, Entry]:
        """CLUSTER NODES of one view, by host name (from the address, so it works without announced names)."""
        by_ip = {host.ip: name for name, host in self.hosts.items()}
        entries: dict[str, Entry] = {}
        for line in view["cluster_nodes"].splitlines():
            fields = line.split()
            address = fields[1]
            ip = address.split(":", 1)[0]
            announced = address.split(",")[1] if "," in address else ""
            name = by_ip.get(ip, ip)
            entries[name] = Entry(id=fields[0], name=name, announced=announced,
                                  flags=frozenset(fields[2].split(",")), master=fields[3], epoch=int(fields[6]),
                                  slots=_slots(fields[8:]))
        return entries

    def fingerprint(self) -> dict[str, Any]:
        """What a re-run must not change: every node's view of ids, roles, masters, epochs and slots."""
        out: dict[str, Any] = {}
        for name, view in self.views().items():
            assert "error" not in view, f"{name}: {view}"
            topo = self.topology(view)
            out[name] = {
                "current_epoch": view["cluster_info"]["cluster_current_epoch"],
                "nodes": sorted((e.name, e.id, e.role, e.master, e.epoch, sorted(e.slots)) for e in topo.values()),
            }
        return out


@contextlib.contextmanager
def boot(tier: str, workdir: Path, tag: str) -> Iterator[RedisStack]:
    require_netns()
    for binary in ("redis-server", "redis-cli", "getent", "runuser"):
        require_binary(binary)
    r = rendered(tier)
    create_c = container(r, CREATE_NAME)
    script = uploads(create_c)[CREATE_PATH][0]
    listed = re.search(r'^NODES="([^"]+)"$', script, re.MULTILINE)
    assert listed, "create-cluster.sh names no NODES"
    endpoints = listed.group(1).split()
    names = [e.rpartition(":")[0] for e in endpoints]
    ports = {int(e.rpartition(":")[2]) for e in endpoints}
    assert len(ports) == 1, endpoints
    conf = uploads(container(r, names[0]))[CONF_PATH][0]
    (app_url,) = {urlsplit(env_of(c)["REDIS_URL"]) for c in r.of_type("docker:index/container:Container")
                  if "REDIS_URL" in env_of(c)}
    timeout = re.search(r"^cluster-node-timeout (\d+)$", conf, re.MULTILINE)
    assert timeout, "redis.conf sets no cluster-node-timeout"

    with Network(workdir, tag) as net:
        hosts: dict[str, Host] = {}
        for name in names:
            host = net.add(name)
            install_uploads(host, container(r, name))
            host.write(f"{STANDIN_DIR}/docker-entrypoint.sh", ENTRYPOINT_STANDIN, 0o755)
            hosts[name] = host
        create = net.add(CREATE_NAME)
        install_uploads(create, create_c)
        stack = RedisStack(tier=tier, net=net, rendering=r, names=names, port=ports.pop(), hosts=hosts,
                           create=create, client=net.add(CLIENT_NAME), password=env_of(create_c)["REDISCLI_AUTH"],
                           app_user=app_url.username or "", app_password=app_url.password or "",
                           node_timeout_ms=int(timeout.group(1)))
        for name in names:
            stack.start(name)
        for name in names:
            try:
                wait_until(functools.partial(stack.healthy, name), timeout=30, what=f"{name}'s health check")
            except AssertionError as err:
                raise AssertionError(f"{err}\n{name} log:\n{stack.log(name)}") from None
        yield stack


def check_formed(stack: RedisStack) -> dict[str, Entry]:
    """All slots served by the intended masters (the first ones listed), each with exactly its replicas,
    in every node's own view. Returns the topology."""
    masters, replicas = SHAPES[stack.tier]
    script = uploads(container(stack.rendering, CREATE_NAME))[CREATE_PATH][0]
    assert f"\nMASTERS={masters}\n" in script and f"\nREPLICAS={replicas}\n" in script
    assert len(stack.names) == masters * (1 + replicas)
    views = stack.views()
    topologies = {}
    for name, view in views.items():
        assert "error" not in view, f"{name}: {view}"
        info = view["cluster_info"]
        assert info["cluster_state"] == "ok", f"{name}: {info}"
        assert info["cluster_slots_assigned"] == info["cluster_slots_ok"] == str(CLUSTER_SLOTS), f"{name}: {info}"
        assert info["cluster_known_nodes"] == str(len(stack.names)), f"{name}: {info}"
        topologies[name] = stack.topology(view)
    first = topologies[stack.names[0]]
    shape = {e.name: (e.role, e.master, e.slots) for e in first.values()}
    for name, topo in topologies.items():
        assert {e.name: (e.role, e.master, e.slots) for e in topo.values()} == shape, f"{name} sees another cluster"
        assert all(not e.flags & {"fail", "fail?", "handshake", "noaddr"} for e in topo.values()), topo
    assert set(first) == set(stack.names)
    got_masters = [n for n in stack.names if first[n].role == "master"]
    assert got_masters == stack.names[:masters], f"masters: {got_masters}"
    covered: set[int] = set()
    for name in got_masters:
        assert not covered & first[name].slots, f"{name} shares slots"
        covered |= first[name].slots
        followers = [e.name for e in first.values() if e.master == first[name].id]
        assert len(followers) == replicas, f"{name} has replicas {followers}"
    assert covered == set(range(CLUSTER_SLOTS))
    assert all(first[n].role == "replica" for n in stack.names[masters:]), shape
    return first


def pairing(topo: dict[str, Entry]) -> str:
    ids = {e.id: e.name for e in topo.values()}
    return ", ".join(sorted(f"{e.name}->{ids[e.master]}" for e in topo.values() if e.role == "replica"))


def create_and_rerun(stack: RedisStack) -> dict[str, Entry]:
    """The creation step proves the cluster; a second run exits 0 and leaves every node's view as it was."""
    done = stack.created
    assert done is not None
    assert done.returncode == 0, f"create-cluster.sh exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert "cluster formed" in done.stdout, done.stdout
    topo = check_formed(stack)
    before = stack.fingerprint()
    start = time.monotonic()
    again = stack.run_create()
    rerun_s = time.monotonic() - start
    assert again.returncode == 0, f"second run exited {again.returncode}\n{again.stdout}\n{again.stderr}"
    assert "nothing to do" in again.stdout, again.stdout
    assert "creating the cluster" not in again.stdout
    assert stack.fingerprint() == before, "the second run changed the cluster"
    masters, replicas = SHAPES[stack.tier]
    report(f"redis {stack.tier}: create-cluster.sh formed {len(stack.names)} nodes ({masters} masters x {replicas} "
           f"replica) in {stack.created_s:.1f}s; a second run exited 0 in {rerun_s:.1f}s with no change"
           + (f"; replicas: {pairing(topo)}" if replicas else ""))
    return topo


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisStack]:
    """The large tier's 6 nodes, booted, with the creation step run once (as `pulumi up` would)."""
    workdir = traversable(tmp_path_factory.mktemp("redis-large"))
    with boot("large", workdir, "rdl") as stack:
        start = time.monotonic()
        stack.created = stack.run_create()
        stack.created_s = time.monotonic() - start
        yield stack


def _formed(stack: RedisStack) -> RedisStack:
    if stack.created is None or stack.created.returncode != 0:
        pytest.fail("the cluster was not created (see the creation test)")
    return stack


def _synced(stack: RedisStack, name: str) -> bool:
    return "master_link_status:up" in stack.cli(name, "info", "replication")


def test_creation_covers_every_slot_with_the_intended_masters_and_replicas_and_a_rerun_changes_nothing(
    large: RedisStack,
) -> None:
    create_and_rerun(large)
    # The replicas are replicas in fact: each has synced from its master, authenticated with the password.
    for name in large.names[SHAPES["large"][0]:]:
        wait_until(functools.partial(_synced, large, name), timeout=30, what=f"{name} to sync from its master")


def test_every_node_refuses_commands_without_the_password_or_with_a_wrong_one(large: RedisStack) -> None:
    stack = _formed(large)
    replies = stack.probe("auth", {"nodes": stack.endpoints})
    assert set(replies) == set(stack.endpoints)
    for endpoint, got in replies.items():
        for command in ("ping", "set", "cluster_nodes", "ping_after_wrong"):
            assert str(got[command]).startswith("-NOAUTH"), f"{endpoint}: {command} -> {got[command]}"
        assert str(got["wrong_auth"]).startswith("-WRONGPASS"), f"{endpoint}: {got['wrong_auth']}"
        # The same connection with the right password works: the refusals above are the password's doing.
        assert (got["auth"], got["ping_after_auth"]) == ("+OK", "+PONG"), f"{endpoint}: {got}"


def test_nodes_announce_their_host_names(large: RedisStack) -> None:
    stack = _formed(large)
    installed = tuple(int(p) for p in (server_versions().redis or "0.0").split(".")[:2])
    if installed < HOSTNAMES_SINCE:
        pytest.skip(f"redis {server_versions().redis} has no cluster-announce-hostname")
    for name, view in stack.views().items():
        topo = stack.topology(view)
        assert {e.name: e.announced for e in topo.values()} == {n: n for n in stack.names}, view["cluster_nodes"]
        # Clients are sent the names (cluster-preferred-endpoint-type hostname), not addresses. (Replicas are
        # listed only once they report a replication offset, so only the masters are certain to be there.)
        masters = {slot_range[2][0] for slot_range in view["cluster_slots"]}
        listed = {node[0] for slot_range in view["cluster_slots"] for node in slot_range[2:]}
        assert masters == {e.name for e in topo.values() if e.role == "master"}, f"{name}: {view['cluster_slots']}"
        assert listed <= set(stack.names), f"{name}: CLUSTER SLOTS endpoints {listed}"


def test_the_apps_user_reads_and_writes_but_cannot_administer_the_nodes(large: RedisStack) -> None:
    """The applications' ACL user (the rendered REDIS_URL's) works through a cluster client and is refused
    every administrative command on every node; the cluster is whole afterwards and the administrator (the
    creation step's user) still may run them."""
    stack = _formed(large)
    assert stack.app_user == "banyan-app" and stack.app_password and stack.app_password != stack.password
    items = {f"acl:{i}": f"v{i}" for i in range(12)}
    stack.probe("write", {"startup": stack.endpoints, "items": items, "replicas": 0}, app=True)
    assert stack.probe("read", {"startup": stack.endpoints, "keys": list(items)}, app=True)["values"] == items

    topo = check_formed(stack)
    replies = stack.probe("acl", {"nodes": stack.endpoints, "peer": topo[stack.names[-1]].id}, app=True)
    assert set(replies) == set(stack.endpoints)
    refused = ["config_set", "config_get", "flushall", "flushdb", "shutdown", "cluster_reset", "cluster_forget",
               "cluster_meet", "cluster_failover", "replicaof", "keys", "acl_list"]
    for endpoint, got in replies.items():
        assert got["auth"] == "+OK", f"{endpoint}: {got['auth']}"
        assert {c: str(got[c]).split(" ")[0] for c in refused} == dict.fromkeys(refused, "-NOPERM"), endpoint
        # DEBUG is refused to every remote client before the ACL is asked (enable-debug-command no, the
        # default); the ACL's own verdict is asked of the node below.
        assert str(got["debug"]).startswith(("-NOPERM", "-ERR DEBUG command not allowed")), got["debug"]
        # What a cluster client needs stays allowed.
        assert got["ping"] == "+PONG" and got["whoami"] == "banyan-app", f"{endpoint}: {got}"
        assert isinstance(got["cluster_slots"], list) and len(got["cluster_slots"]) >= SHAPES["large"][0]
        assert str(got["cluster_nodes"]).count("\n") == len(stack.names) and "redis_version:" in got["info"]
        # The applications' password is not the administrator's: as `default` it opens nothing.
        assert str(got["as_default"]).startswith("-WRONGPASS"), f"{endpoint}: {got['as_default']}"

    # The ACL's verdict on its own (ACL DRYRUN, Redis 7.0+), asked by the administrator.
    for command in (["debug", "sleep", "0"], ["debug", "segfault"], ["shutdown"], ["config", "set", "save", ""],
                    ["cluster", "reset", "hard"], ["flushall"]):
        verdict = stack.cli(stack.names[0], "acl", "dryrun", stack.app_user, *command)
        assert "no permissions" in verdict, f"{command}: {verdict}"
    assert stack.cli(stack.names[0], "acl", "dryrun", stack.app_user, "set", "k", "v").strip() == "OK"

    # Nothing was reset, forgotten, wiped or stopped; the refusals were the ACL's, not the commands' own.
    check_formed(stack)
    assert stack.probe("read", {"startup": stack.endpoints, "keys": list(items)}, app=True)["values"] == items
    for name in stack.names:
        assert stack.cli(name, "config", "get", "maxmemory-policy").split() == ["maxmemory-policy", "allkeys-lfu"]
        assert stack.healthy(name), f"{name} is not healthy after the refused commands"
    report(f"redis large: the applications' user {stack.app_user} reads and writes through redis-py's cluster "
           f"client and is refused (NOPERM) on all {len(stack.names)} nodes: {', '.join(refused)}")


def test_stopping_a_master_promotes_its_replica_and_writes_to_its_slots_resume(large: RedisStack) -> None:
    stack = _formed(large)
    topo = check_formed(stack)
    victim = stack.names[0]
    ids = {e.id: e.name for e in topo.values()}
    (replica,) = [e.name for e in topo.values() if e.master == topo[victim].id]
    slots = topo[victim].slots
    keys = [k for k in (f"ratelimit:{i}" for i in range(2000)) if key_slot(k.encode()) in slots]
    key, seeded = keys[0], {k: f"v-{k}" for k in keys[1:21]}
    acked = stack.probe("write", {"startup": stack.endpoints, "items": seeded, "replicas": 1}, app=True)["acked"]
    assert list(acked.values()) == [1], f"replicas acknowledging the seeded keys: {acked}"

    log, stop = stack.client.root / "failover.log", stack.client.root / "failover.stop"
    bound = BOUND_TIMEOUTS * stack.node_timeout_ms / 1000
    args = {"startup": stack.endpoints, "key": key, "stop": str(stop), "deadline_s": 120, "interval_s": 0.05}
    writer = stack.client.spawn([sys.executable, str(PROBE), "poll", json.dumps(args)],
                                env=stack.app_env, log=log)
    try:
        wait_until(lambda: sum(a["ok"] for a in read_poll_log(log)) >= 3, timeout=30, what="the writer's first writes")
        stopped = time.monotonic()
        stack.hosts[victim].kill_all()
        killed = time.monotonic()
        stack.state["stopped"], stack.state["promoted"], stack.state["seeded"] = victim, replica, seeded

        def resumed() -> bool:
            return any(a["ok"] and a["t0"] >= killed for a in read_poll_log(log))

        try:
            wait_until(resumed, timeout=bound, what=f"a write to {victim}'s slots to succeed after its stop")
        except AssertionError as err:
            tail = "\n".join(json.dumps(a) for a in read_poll_log(log)[-3:])
            raise AssertionError(f"{err}\nlast attempts:\n{tail}\n{replica} log:\n{stack.log(replica)}") from None
    finally:
        stop.touch()
        writer.wait(timeout=30)

    attempts = read_poll_log(log)
    first = next(a for a in attempts if a["ok"] and a["t0"] >= killed)
    recovery = first["t1"] - stopped
    failed = [a for a in attempts if not a["ok"] and a["t0"] >= stopped and a["t1"] <= first["t1"]]
    assert not [a for a in attempts if not a["ok"] and a["t1"] < stopped], "writes failed before the stop"
    assert first["node"].rpartition(":")[0] in {replica, stack.hosts[replica].ip}, f"written to {first['node']}"
    assert recovery <= bound

    survivors = [n for n in stack.names if n != victim]
    after = stack.topology(stack.views([replica])[replica])
    assert after[replica].role == "master" and after[replica].slots == slots, after[replica]
    assert "fail" in after[victim].flags, after[victim]
    values = stack.probe("read", {"startup": [f"{n}:{stack.port}" for n in survivors], "keys": list(seeded)},
                         app=True)
    lost = [k for k, v in seeded.items() if values["values"][k] != v]
    assert not lost, f"acknowledged writes lost in the failover: {lost}"
    report(f"redis large: {victim} (master, {len(slots)} slots) killed -> {replica} promoted; first successful write "
           f"to those slots {recovery:.2f}s after the stop (bound {bound:g}s = {BOUND_TIMEOUTS} x cluster-node-timeout "
           f"{stack.node_timeout_ms} ms); {len(failed)} failed writes meanwhile (one attempt per "
           f"{args['interval_s']}s); {len(lost)} of {len(seeded)} replicated keys lost; former pairs "
           f"{', '.join(sorted(f'{e.name}->{ids[e.master]}' for e in topo.values() if e.role == 'replica'))}")


def test_the_stopped_master_started_again_rejoins_as_a_replica(large: RedisStack) -> None:
    stack = _formed(large)
    if "stopped" not in stack.state:
        pytest.fail("no master was stopped (see the failover test)")
    victim, promoted = stack.state["stopped"], stack.state["promoted"]
    start = time.monotonic()
    stack.start(victim)

    def replicating() -> bool:
        info = stack.cli(victim, "info", "replication")
        return "role:slave" in info and "master_link_status:up" in info

    try:
        took = wait_until(replicating, timeout=60, what=f"{victim} to rejoin as a replica")
    except AssertionError as err:
        raise AssertionError(f"{err}\n{victim} log:\n{stack.log(victim)}") from None
    topo = stack.topology(stack.views([victim])[victim])
    assert topo[victim].role == "replica" and topo[victim].master == topo[promoted].id, topo[victim]

    # The creation step, run again, finds the cluster whole in every node's view and changes nothing.
    before = stack.fingerprint()
    again = stack.run_create()
    assert again.returncode == 0, f"{again.stdout}\n{again.stderr}"
    assert "nothing to do" in again.stdout, again.stdout
    assert stack.fingerprint() == before
    masters = [n for n in stack.names if topo[n].role == "master"]
    assert sorted(masters) == sorted([*stack.names[1:SHAPES["large"][0]], promoted])
    seeded = stack.state["seeded"]
    values = stack.probe("read", {"startup": stack.endpoints, "keys": list(seeded)}, app=True)["values"]
    assert values == seeded
    report(f"redis large: {victim} started again through start.sh rejoined as a replica of {promoted} "
           f"(synced {took:.1f}s after start, {time.monotonic() - start:.1f}s with the cluster-wide check)")


def test_medium_creation_covers_every_slot_with_three_masters_and_a_rerun_changes_nothing(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    workdir = traversable(tmp_path_factory.mktemp("redis-medium"))
    with boot("medium", workdir, "rdm") as stack:
        start = time.monotonic()
        stack.created = stack.run_create()
        stack.created_s = time.monotonic() - start
        topo = create_and_rerun(stack)
        assert all(e.role == "master" for e in topo.values())
