"""Docker preflight rules: what the engine already holds that this stack's next `up` could not survive.

Pure: the resolved spec and a snapshot of the engine's containers in, problems out (infra/preflight.py
reads the engine). Two kinds of problem stop a preview before any resource is registered:

- a host port this stack publishes (Nginx's public port, RabbitMQ's management port) that a container of
  anyone else (another stack, another project, an unlabelled container) already publishes: `up` would
  otherwise stop half-done at the first container create;
- a RabbitMQ or Redis cluster shape the running nodes cannot be moved to by replacing containers: a node
  removed while still a cluster member (RabbitMQ quorum queues lose their majority; Redis hash slots are
  orphaned), or a Redis node count or mode the formed cluster does not have.

A stopped node container (`docker stop`) that this `up` would remove is the documented shrink's step done and
is not counted (a warning reminds that it must have left its cluster); a stopped node the stack keeps still
counts. Once the nodes to remove are out of their cluster and stopped, the same preview passes. Growth of
RabbitMQ is allowed (new nodes join at start); PostgreSQL replica decreases are allowed (the primary's
entrypoint drops the inactive slots of removed replicas).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from model.errors import ConfigProblem
from model.spec import PlatformSpec, ResourceSpec
from model.tiers import TIERS

# The labels every container and volume of a Docker stack carries (components/docker_common.py writes them).
PROJECT_LABEL = "banyan.project"
STACK_LABEL = "banyan.stack"
PART_LABEL = "banyan.part"
INSTANCE_LABEL = "banyan.instance"
# What a container runs on besides image and env: a digest of its files and command line.
CONFIG_LABEL = "banyan.config-sha256"
# PostgreSQL containers: the major version (banyan:postgres.version) whose data directory they run on.
POSTGRES_MAJOR_LABEL = "banyan.postgres-major"
# The PostgreSQL primary: the restore (model.spec.RestoreSpec.restore_id) whose backup filled its data.
POSTGRES_RESTORE_LABEL = "banyan.postgres-restore"

# Docker states of a container that is not running and will not be started again by its restart policy.
STOPPED_STATES = frozenset({"created", "exited", "dead"})


@dataclass(frozen=True)
class EngineContainer:
    """One container as the engine lists it: enough to tell whose it is, what it publishes, whether it runs."""

    name: str
    state: str
    labels: Mapping[str, str] = field(default_factory=dict)
    # TCP host ports it publishes now (the engine lists them for running containers only).
    host_ports: frozenset[int] = frozenset()
    # The image reference it was created from, as given (`postgres:16.9-alpine`).
    image: str = ""

    @property
    def live(self) -> bool:
        return self.state not in STOPPED_STATES

    def owned_by(self, project: str, stack: str) -> bool:
        return self.labels.get(PROJECT_LABEL) == project and self.labels.get(STACK_LABEL) == stack


@dataclass(frozen=True)
class EngineSnapshot:
    """Every container on the engine (running or not), and the host's size where the engine said it
    (`GET /info`: NCPU, MemTotal)."""

    containers: tuple[EngineContainer, ...] = ()
    cpus: int | None = None
    memory_bytes: int | None = None

    @classmethod
    def from_container_list(cls, listed: Sequence[Mapping[str, Any]]) -> EngineSnapshot:
        """From the answer of the engine's `GET /containers/json?all=1`."""
        found = []
        for item in listed:
            names = item.get("Names") or [item.get("Id", "?")]
            ports = frozenset(
                int(p["PublicPort"]) for p in item.get("Ports") or []
                if p.get("PublicPort") and str(p.get("Type", "tcp")) == "tcp"
            )
            found.append(EngineContainer(
                name=str(names[0]).lstrip("/"),
                state=str(item.get("State", "")),
                labels={str(k): str(v) for k, v in (item.get("Labels") or {}).items()},
                host_ports=ports,
                image=str(item.get("Image", "")),
            ))
        return cls(tuple(sorted(found, key=lambda c: c.name)))


@dataclass(frozen=True)
class Findings:
    problems: tuple[ConfigProblem, ...]
    warnings: tuple[str, ...]


def check(spec: PlatformSpec, snapshot: EngineSnapshot,
          digests: Mapping[str, str] | None = None) -> Findings:
    """Every problem (and warning) of deploying `spec` onto the engine `snapshot` describes. `digests`: the
    config label (components/docker_common.CONFIG_LABEL) each clustered node of `spec` will carry, by
    instance; where given, a change that replaces several running nodes at once is warned about."""
    problems: list[ConfigProblem] = []
    warnings: list[str] = []
    problems += _port_clashes(spec, snapshot)
    problems += _host_size(spec, snapshot)
    mine = [c for c in snapshot.containers if c.owned_by(spec.project, spec.stack)]
    problems += _rabbitmq(spec, mine, warnings)
    problems += _redis(spec, mine, warnings)
    problems += _versions(spec, mine)
    problems += _restore_over_data(spec, mine)
    warnings += _replaced_together(spec, mine, digests or {})
    warnings += _apps_replaced_together(spec, mine)
    return Findings(tuple(problems), tuple(warnings))


# ---- clustered nodes replaced together ----------------------------------------------------------------------


def _replaced_together(spec: PlatformSpec, mine: Sequence[EngineContainer], digests: Mapping[str, str]) -> list[str]:
    """A new configuration for a clustered part replaces every node that carries it in one `up`: the engine
    orders no replacement after another's health. Two or more running nodes at once is an outage of the
    part (RabbitMQ loses its quorum queues' majority; Redis the changed masters' slots), so the preview says
    so and gives the rolling procedure, one node per `pulumi up --target`."""
    found = _rabbitmq_grown_while_replaced(spec, mine, digests)
    for part, pattern in ((spec.rabbitmq.name, rf"{re.escape(spec.rabbitmq.name)}-(\d+)"),
                          (spec.redis.name, rf"{re.escape(spec.redis.name)}-node-(\d+)")):
        changed = [c for c in _nodes(mine, part, pattern) if c.live and _instance(c) in digests
                   and c.labels.get(CONFIG_LABEL) not in (None, digests[_instance(c)])]
        if len(changed) < 2:
            continue
        steps = "; then ".join(f"`pulumi up --target '**docker:index/container:Container::*{_instance(c)}'`"
                               for c in changed)
        if part == spec.rabbitmq.name:
            between = ("before each, `rabbitmq-queues check_if_node_is_quorum_critical` (docker exec in that node) "
                       "must pass: every quorum queue keeps a majority without it")
        else:
            between = ("after each, wait until `redis-cli cluster info` says `cluster_state:ok` on every node and "
                       "`redis-cli cluster nodes` shows no `fail` or `disconnected`")
        found.append(
            f"{part}: this update changes the configuration of {len(changed)} running nodes ({_names(changed)}), "
            "and `pulumi up` would replace them together: the part is down until they are all back. To roll it "
            f"one node at a time instead, run {steps}; {between}; then a plain `pulumi up` for the rest "
            "(measured in tests/e2e/docker/test_day2.py: no confirmed message lost, no failed request on the "
            "other masters)")
    return found


def _apps_replaced_together(spec: PlatformSpec, mine: Sequence[EngineContainer]) -> list[str]:
    """Every gateway and service container lists the data nodes in its environment (model/contract.py: the
    PostgreSQL replicas, the RabbitMQ nodes, the Redis nodes), and a changed `envs` replaces a container. So an
    update that adds or removes data nodes (a tier move, a count key) replaces all of them in one `up`, in
    parallel: the gateways are down together until the new ones are healthy. The preview says so, with the
    rolling procedure."""
    listed = {spec.postgres.name: (rf"{re.escape(spec.postgres.name)}-replica-\d+", spec.postgres.replica_names),
              spec.rabbitmq.name: (rf"{re.escape(spec.rabbitmq.name)}-\d+", spec.rabbitmq.instance_names),
              spec.redis.name: (rf"{re.escape(spec.redis.name)}-node-\d+", spec.redis.instance_names)}
    workloads = {w.name for w in spec.workloads}
    live_apps = [c for c in mine if c.live and c.labels.get(PART_LABEL) in workloads]
    if len(live_apps) < 2:
        return []
    moved = []
    for part, (pattern, wanted) in listed.items():
        running = {_instance(c) for c in mine
                   if c.live and c.labels.get(PART_LABEL) == part and re.fullmatch(pattern, _instance(c))}
        if not running:
            continue  # the part is not up yet: nothing the apps list changes under them
        added, removed = sorted(set(wanted) - running), sorted(running - set(wanted))
        if added or removed:
            moved.append(f"{part} " + ", ".join([*(f"+{i}" for i in added), *(f"-{i}" for i in removed)]))
    if not moved:
        return []
    gateways = [_instance(c) for c in _nodes(live_apps, spec.gateway.name, rf"{re.escape(spec.gateway.name)}-(\d+)")]
    said = (f"{spec.gateway.name} and the services: this update changes the data nodes their environment lists "
            f"({'; '.join(moved)}), so `pulumi up` replaces all {len(live_apps)} of their running containers at once "
            "(a changed environment replaces a container): requests fail until the new gateways are healthy")
    if len(gateways) < 2:
        return [said + " (with one gateway running, the edge is down while it is replaced, whatever the order)"]
    steps = "; then ".join(f"`pulumi up --target '**docker:index/container:Container::*{g}'`" for g in gateways)
    return [said + ". To keep serving, bring the data tier in first (the steps above, if any), then roll the gateways "
            f"one at a time ({steps}), then run a plain `pulumi up`, which replaces the services (their queues hold "
            "the work meanwhile)"]


def _rabbitmq_grown_while_replaced(spec: PlatformSpec, mine: Sequence[EngineContainer],
                                   digests: Mapping[str, str]) -> list[str]:
    """New RabbitMQ nodes created in the same `up` that replaces the running ones: a fresh node that finds no
    running peer retries 10 x 500 ms (RabbitMQ's discovery_retry_limit and interval), then starts as a blank
    standalone node, a cluster of its own that never joins (seen on the engine in tests/e2e/docker). Growing
    in a second `up`, with the replaced nodes back, avoids it."""
    rabbit = spec.rabbitmq
    live = [c for c in _nodes(mine, rabbit.name, rf"{re.escape(rabbit.name)}-(\d+)") if c.live]
    changed = [c for c in live if _instance(c) in digests
               and c.labels.get(CONFIG_LABEL) not in (None, digests[_instance(c)])]
    new = [i for i in rabbit.instance_names if i not in {_instance(c) for c in live}]
    if not (live and changed and new):
        return []
    targets = " ".join(f"--target '**docker:index/container:Container::*{_instance(c)}'" for c in changed)
    return [f"{rabbit.name}: this update replaces the running nodes {_names(changed)} and creates {', '.join(new)} "
            "at the same time; a new node that finds no running peer within about 5 s starts as a cluster of its own "
            f"and never joins. Replace the running nodes first (`pulumi up {targets}`, or one at a time as below), "
            "wait until they are healthy, then run a plain `pulumi up` to add the new nodes"]


# ---- the host's size -------------------------------------------------------------------------------------

def _host_size(spec: PlatformSpec, snapshot: EngineSnapshot) -> list[ConfigProblem]:
    """Docker refuses to create a container whose CPU limit exceeds the host's CPUs ("Range of CPUs is from
    0.01 to N"), or whose memory limit exceeds its memory, and `pulumi up` would stop half-done there."""
    parts: list[tuple[str, ResourceSpec]] = [
        ("banyan:gateway", spec.gateway.resources),
        *((f"banyan:services[{i}]", s.resources) for i, s in enumerate(spec.services)),
        ("banyan:postgres", spec.postgres.resources), ("banyan:rabbitmq", spec.rabbitmq.resources),
        ("banyan:redis", spec.redis.resources), ("banyan:nginx", spec.nginx.resources)]
    found = []
    for key, resources in parts:
        cpu, memory = resources.limits.cpu_millis, resources.limits.memory_mib
        if snapshot.cpus is not None and cpu > snapshot.cpus * 1000:
            found.append(ConfigProblem(f"{key}.resources.limits.cpu_millis", cpu, (
                f"this engine's host has {_plural(snapshot.cpus, 'CPU')} and Docker refuses a container limit above "
                f"that (the {spec.tier} tier's value unless the key is set); allowed here: at most "
                f"{snapshot.cpus * 1000}, or a smaller tier")))
        if snapshot.memory_bytes is not None and memory * 2**20 > snapshot.memory_bytes:
            found.append(ConfigProblem(f"{key}.resources.limits.memory_mib", memory, (
                f"this engine's host has {snapshot.memory_bytes >> 20} MiB of memory, less than one container's "
                f"limit (the {spec.tier} tier's value unless the key is set); allowed here: at most "
                f"{snapshot.memory_bytes >> 20}, or a smaller tier")))
    return found


# ---- host ports ------------------------------------------------------------------------------------------

def published_ports(spec: PlatformSpec) -> list[tuple[str, int]]:
    """(key, host port) of every port this stack publishes on the Docker host."""
    ports = [("banyan:nginx.port", spec.nginx.public_port)]
    if spec.rabbitmq.management_host_port is not None:
        ports.append(("banyan:rabbitmq.management_host_port", spec.rabbitmq.management_host_port))
    return ports


def _whose(container: EngineContainer, project: str) -> str:
    labels = container.labels
    shown = []
    if labels.get(PROJECT_LABEL) not in (None, project):
        shown.append(f"banyan.project {labels[PROJECT_LABEL]}")
    if STACK_LABEL in labels:
        shown.append(f"banyan.stack {labels[STACK_LABEL]}")
    return ", ".join(shown) if shown else "no banyan.stack label"


def _port_clashes(spec: PlatformSpec, snapshot: EngineSnapshot) -> list[ConfigProblem]:
    problems = []
    for key, port in published_ports(spec):
        holders = [c for c in snapshot.containers
                   if port in c.host_ports and not c.owned_by(spec.project, spec.stack)]
        for holder in holders:
            problems.append(ConfigProblem(key, port, (
                f"host port {port} is already published by container {holder.name} "
                f"({_whose(holder, spec.project)}), so this stack's `up` would fail to start its container; "
                f"choose another port for this stack (`pulumi config set --path {key} <free port>`), "
                "or free that port on the Docker host")))
    return problems


# ---- clustered parts -------------------------------------------------------------------------------------

def _nodes(mine: Sequence[EngineContainer], part: str, pattern: str) -> list[EngineContainer]:
    """This stack's node containers of `part`, in node order (instance names `pattern`, one number group)."""
    found = []
    for c in mine:
        instance = c.labels.get(INSTANCE_LABEL, "")
        match = re.fullmatch(pattern, instance)
        if c.labels.get(PART_LABEL) == part and match:
            found.append((int(match[1]), c))
    return [c for _, c in sorted(found, key=lambda pair: pair[0])]


def _instance(c: EngineContainer) -> str:
    return c.labels.get(INSTANCE_LABEL, c.name)


def _names(containers: Sequence[EngineContainer]) -> str:
    return ", ".join(_instance(c) for c in containers)


def count_key(spec: PlatformSpec, part: Literal["rabbitmq", "redis"]) -> tuple[str, object]:
    """The key that decided a node count: its own key when the stack sets it, else the tier."""
    preset = TIERS[spec.tier]
    if part == "rabbitmq":
        from_tier = spec.rabbitmq.nodes == preset.rabbitmq_nodes
        return ("banyan:tier", spec.tier) if from_tier else ("banyan:rabbitmq.nodes", spec.rabbitmq.nodes)
    from_tier = (spec.redis.nodes == preset.redis_nodes
                 and spec.redis.replicas_per_master == preset.redis_replicas_per_master)
    return ("banyan:tier", spec.tier) if from_tier else ("banyan:redis.nodes", spec.redis.nodes)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _leaving(nodes: Sequence[EngineContainer],
             keep: Sequence[str]) -> tuple[list[EngineContainer], list[EngineContainer]]:
    """The nodes this `up` would remove: (still running, stopped)."""
    leaving = [c for c in nodes if _instance(c) not in set(keep)]
    return [c for c in leaving if c.live], [c for c in leaving if not c.live]


def _rabbitmq(spec: PlatformSpec, mine: Sequence[EngineContainer], warnings: list[str]) -> list[ConfigProblem]:
    rabbit = spec.rabbitmq
    nodes = _nodes(mine, rabbit.name, rf"{re.escape(rabbit.name)}-(\d+)")
    running, stopped = _leaving(nodes, rabbit.instance_names)
    if stopped and not running:
        warnings.append(
            f"RabbitMQ node{'s' if len(stopped) > 1 else ''} {_names(stopped)}: stopped, and this `up` removes "
            "the container (its volume is kept); it must have been taken out of the cluster first "
            "(`rabbitmqctl forget_cluster_node`)")
    if not running:
        return []
    key, value = count_key(spec, "rabbitmq")
    tier = f" (the {spec.tier} tier's count)" if key == "banyan:tier" else ""
    first = _instance(running[-1])
    # Rendered for 3+ nodes before 4.3, pause_minority pauses the last node once it is one of two; it stays
    # paused. 4.3 keeps its metadata in Khepri only and reads no partition handling: nothing to resume.
    mnesia = tuple(int(x) for x in rabbit.version.split(".")[:2]) < (4, 3)
    last = (" When one node is left it has paused (pause_minority): run `rabbitmqctl stop_app` and "
            "`rabbitmqctl start_app` on it." if rabbit.nodes == 1 and mnesia else "")
    return [ConfigProblem(key, value, (
        f"RabbitMQ would shrink from {len(nodes)} nodes to {rabbit.nodes}{tier}, but {_names(running)} "
        f"{'is' if len(running) == 1 else 'are'} running as cluster member{'s' if len(running) > 1 else ''}; "
        "removing a node without taking it out of the cluster costs quorum queues their majority, so this is "
        "refused. Procedure, one node at a time, last first: on a remaining node run "
        f"`rabbitmq-queues shrink rabbit@{first}` (its quorum queue members leave while a majority is up), stop "
        f"the node (`docker stop {spec.project}-{spec.stack}-{first}`), run `rabbitmqctl forget_cluster_node "
        f"rabbit@{first}` on a remaining node.{last} Then lower the count; allowed now: {len(nodes)} nodes or more "
        "(growth is allowed)"))]


def _redis(spec: PlatformSpec, mine: Sequence[EngineContainer], warnings: list[str]) -> list[ConfigProblem]:
    red = spec.redis
    nodes = _nodes(mine, red.name, rf"{re.escape(red.name)}-node-(\d+)")
    running, stopped = _leaving(nodes, red.instance_names)
    # A stopped node this `up` removes is the procedure's last step done; one it keeps is just stopped.
    counted = [c for c in nodes if c not in stopped]
    if not counted:
        return []
    create_step = any(_instance(c) == red.cluster_create_name and c.labels.get(PART_LABEL) == red.name
                      for c in mine)
    old_mode = "cluster" if create_step or len(counted) > 1 else "standalone"
    if not running and len(counted) == red.nodes and old_mode == red.mode:
        if stopped:
            warnings.append(
                f"Redis node{'s' if len(stopped) > 1 else ''} {_names(stopped)}: stopped, and this `up` removes "
                "the container (its volume is kept); its slots must have been moved away first "
                "(`redis-cli --cluster reshard`, `redis-cli --cluster del-node`)")
        return []
    key, value = count_key(spec, "redis")

    def shape(count: int, mode: str) -> str:
        return f"a {count}-node cluster" if mode == "cluster" else f"{_plural(count, 'node')} (standalone)"

    if not running and old_mode == red.mode == "cluster" and len(counted) < red.nodes:
        # Growth of a cluster: the creation step runs again (its node list changed) and adds the new, empty
        # nodes to the healthy cluster: masters first with slots rebalanced onto them, then replicas.
        warnings.append(
            f"Redis grows from {shape(len(counted), old_mode)} ({_names(counted)}) to {shape(red.nodes, red.mode)} "
            f"({red.masters} masters x {red.replicas_per_master} replicas): the creation step adds the new nodes to "
            "the running cluster (new masters get their share of the slots, keys moving with them; then replicas "
            "follow the masters with the fewest); it stops without changing anything if the cluster is not healthy")
        return []

    return [ConfigProblem(key, value, (
        f"Redis would change from {shape(len(counted), old_mode)} ({_names(counted)}) to "
        f"{shape(red.nodes, red.mode)}{f' (the {spec.tier} tier)' if key == 'banyan:tier' else ''}; a node-count "
        "decrease or a mode change on a live Redis orphans hash slots (or finds a cluster of another shape), so "
        "this is refused (a cluster may grow). Procedure: move the slots off the nodes to remove "
        "(`redis-cli --cluster reshard`, then `redis-cli --cluster del-node`) and stop them, or build a fresh "
        "cluster of the new shape and migrate the data (always so for standalone <-> cluster); allowed now: "
        f"{shape(len(counted), old_mode)}"))]


# ---- server versions ---------------------------------------------------------------------------------------

# RabbitMQ series and the oldest series each is upgraded from in place (release notes: 4.0-4.2 from 3.13.x,
# 4.3 only from 4.2.x). A series not listed is taken to need its predecessor, as 4.3 does.
RABBITMQ_UPGRADE_FROM: dict[tuple[int, int], tuple[int, int]] = {
    (4, 0): (3, 13), (4, 1): (3, 13), (4, 2): (3, 13), (4, 3): (4, 2)}


def _image_numbers(image: str) -> tuple[int, ...]:
    """The version an image tag names (`postgres:16.9-alpine` -> (16, 9)); () when it names none."""
    from model.images import parse_image  # standard library only, like this module
    try:
        return parse_image(image).version() or ()
    except ValueError:
        return ()


def _restore_over_data(spec: PlatformSpec, mine: Sequence[EngineContainer]) -> list[ConfigProblem]:
    """A restore onto a primary that already holds data (not filled by this very restore) only when asked for."""
    pg, restore = spec.postgres, spec.postgres.restore
    if restore is None or restore.over_existing_data:
        return []
    primary = next((c for c in mine if c.labels.get(PART_LABEL) == pg.name
                    and c.labels.get(INSTANCE_LABEL) == pg.primary_name), None)
    if primary is None or primary.labels.get(POSTGRES_RESTORE_LABEL) == restore.restore_id:
        return []
    return [ConfigProblem("banyan:postgres.restore.enabled", True, (
        f"the primary {pg.primary_name} already exists with its data; a restore would replace it, so it is "
        "refused unless you say so: set banyan:postgres.restore.over_existing_data true (its data directory is "
        "moved aside on its volume, not deleted; the replicas seed again), or run the restore drill "
        "(`python -m tooling.drill <stack>`) to look at the backup without touching the stack"))]


def _versions(spec: PlatformSpec, mine: Sequence[EngineContainer]) -> list[ConfigProblem]:
    problems = []
    pg = spec.postgres
    primary = next((c for c in mine if c.labels.get(PART_LABEL) == pg.name
                    and c.labels.get(INSTANCE_LABEL) == pg.primary_name), None)
    if primary is not None:
        label = primary.labels.get(POSTGRES_MAJOR_LABEL, "")
        numbers = _image_numbers(primary.image)
        running = int(label) if label.isdigit() else (numbers[0] if numbers else None)
        if running is not None and running != pg.version:
            name = f"{spec.project}-{spec.stack}-{pg.primary_name}"
            problems.append(ConfigProblem("banyan:postgres.version", pg.version, (
                f"the running primary {pg.primary_name} ({primary.image}) holds a PostgreSQL {running} data "
                f"directory, which a PostgreSQL {pg.version} server refuses to start on; replacing the "
                "containers cannot move the data between majors, so this is refused. Allowed: "
                f"banyan:postgres.version {running} with a PostgreSQL {running} image (minor updates are "
                f"in place). To move to {pg.version}: stop the writers, dump (`docker exec {name} pg_dumpall "
                "--username postgres > banyan.sql`), remove the PostgreSQL containers and their volumes "
                "(`docker rm -f` and `docker volume rm` them, after `pulumi state unprotect` where "
                "banyan:protect is true), `pulumi refresh`, then `pulumi up` with the new version and image "
                f"(the primary initialises an empty volume, the replicas seed from it) and restore "
                f"(`docker exec -i {name} psql --username postgres --dbname postgres < banyan.sql`)")))
    mq = spec.rabbitmq
    new = tuple(int(x) for x in mq.version.split(".")[:2])
    for c in _nodes(mine, mq.name, rf"{re.escape(mq.name)}-(\d+)"):
        numbers = _image_numbers(c.image)
        if len(numbers) < 2 or not c.live:
            continue
        old = numbers[:2]
        oldest = RABBITMQ_UPGRADE_FROM.get((new[0], new[1]), (new[0], new[1] - 1))
        if old == new or (old < new and (new < (4, 0) or old >= oldest)):
            continue
        via = f"{oldest[0]}.{oldest[1]}"
        problems.append(ConfigProblem("banyan:rabbitmq.version", mq.version, (
            f"RabbitMQ node {_instance(c)} runs {c.image} (RabbitMQ {old[0]}.{old[1]}); "
            + ("RabbitMQ cannot be downgraded (its feature flags and data are one-way)"
               if old > new else
               f"RabbitMQ {mq.version} is upgraded in place only from {via} or newer, so its nodes would not "
               "start on this cluster's data")
            + "; refused. Allowed: the running series"
            + ("" if old > new else
               f", or a series between it and {mq.version} that it upgrades to. Procedure (README, upgrading): "
               f"`pulumi up` with banyan:rabbitmq.image of the newest {via}.x and banyan:rabbitmq.version "
               f"'{via}' one node at a time (the rolling procedure the preview prints); once every node runs it, "
               "`rabbitmqctl enable_feature_flag all` (the nodes' entrypoint does it at start), then the next "
               "step"))))
        break
    return problems
