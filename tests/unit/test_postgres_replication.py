"""PostgreSQL replication settings over the whole allowed range of `postgres.replicas` (0..15), on both targets,
as the component ships them: the postgresql.conf of every Docker instance, the CloudNativePG Cluster's
parameters. What is checked is what replication needs, not the formula that meets it:

- WAL senders: a replica seeding itself with `pg_basebackup -X stream` holds two (the base backup and its WAL
  stream), one once it streams; every replica may seed at once (a new stack, a tier move, a failover that
  re-clones), and a base backup taken by hand beside them needs two more. Never under the server's default
  (10), so no stack runs with fewer senders than a stock PostgreSQL.
- Replication slots: one per replica (Docker: made by the primary's init script, or by a replica added
  later; CloudNativePG: one per standby on every instance), and one for the temporary slot of a base backup
  (pg_basebackup -X stream without -S makes one).
- A hot standby refuses to start with fewer senders or slots than its primary: every instance has the same.
- hot_standby_feedback on: replicas serve reads, and without it the primary's vacuum cancels their queries.
"""

from __future__ import annotations

from functools import cache

import pytest

from components.postgres import PostgresCluster, config
from model.spec import PlatformSpec
from testkit import RecordedResource, Rendering
from testkit.component import render_component
from tests.helpers import spec_for, uploads

REPLICAS = range(16)  # model/config.py: postgres.replicas is 0..15
SENDERS_PER_SEEDING_REPLICA = 2
SENDERS_FOR_A_MANUAL_BASE_BACKUP = 2
SERVER_DEFAULT_SENDERS = 10
SLOTS_PER_REPLICA = 1
SLOTS_FOR_A_MANUAL_BASE_BACKUP = 1
CONTAINER = "docker:index/container:Container"
CLUSTER = "kubernetes:postgresql.cnpg.io/v1:Cluster"


def settings_of(conf: str) -> dict[str, str]:
    pairs = [line.split("=", 1) for line in conf.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    keys = [k.strip() for k, _ in pairs]
    assert len(keys) == len(set(keys)), "a setting given twice: the server takes the last"
    return {k.strip(): v.strip() for k, v in pairs}


@cache
def rendered(stack: str, replicas: int) -> tuple[PlatformSpec, Rendering]:
    spec = spec_for(stack, postgres__replicas=replicas)
    rendering, _ = render_component(spec, lambda s: PostgresCluster(
        "postgres", spec.postgres, passwords=s.secrets.postgres, target=s.target, opts=s.child))
    return spec, rendering


def docker_instances(replicas: int) -> list[RecordedResource]:
    """Every instance's container, primary first."""
    _, r = rendered("dev", replicas)
    containers = sorted(r.of_type(CONTAINER), key=lambda c: (c.name != "postgres-primary", c.name))
    assert len(containers) == 1 + replicas
    return containers


def docker_settings(replicas: int) -> list[dict[str, str]]:
    """The postgresql.conf every instance ships, primary first."""
    return [settings_of(uploads(c)[config.CONF_PATH].content) for c in docker_instances(replicas)]


def kubernetes_settings(replicas: int) -> tuple[int, dict[str, str]]:
    """The Cluster's instance count and the parameters every instance runs with."""
    _, r = rendered("prod", replicas)
    (cluster,) = r.of_type(CLUSTER)
    body = cluster.plain_inputs["spec"]
    return body["instances"], body["postgresql"]["parameters"]


def assert_enough_for(replicas: int, settings: dict[str, str]) -> None:
    senders, slots = int(settings["max_wal_senders"]), int(settings["max_replication_slots"])
    assert senders >= SENDERS_PER_SEEDING_REPLICA * replicas + SENDERS_FOR_A_MANUAL_BASE_BACKUP, (replicas, senders)
    assert senders >= SERVER_DEFAULT_SENDERS, (replicas, senders)
    assert slots >= SLOTS_PER_REPLICA * replicas + SLOTS_FOR_A_MANUAL_BASE_BACKUP, (replicas, slots)


@pytest.mark.parametrize("replicas", REPLICAS)
def test_docker_senders_and_slots_suffice_for_every_replica_count(replicas: int) -> None:
    settings = docker_settings(replicas)
    primary = settings[0]
    assert_enough_for(replicas, primary)
    for standby in settings[1:]:
        for key in ("max_wal_senders", "max_replication_slots", "max_connections"):
            assert standby[key] == primary[key], f"a hot standby needs {key} at least the primary's"
    shipped = uploads(docker_instances(replicas)[0]).values()
    made = sum(u.content.count("pg_create_physical_replication_slot(") for u in shipped)
    assert made == replicas, "one slot per replica, made by the primary's init script"


@pytest.mark.parametrize("replicas", REPLICAS)
def test_kubernetes_senders_and_slots_suffice_for_every_replica_count(replicas: int) -> None:
    instances, parameters = kubernetes_settings(replicas)
    assert instances == 1 + replicas
    assert_enough_for(replicas, parameters)


@pytest.mark.parametrize("replicas", [0, 1, 5, 15])
def test_hot_standby_feedback_is_on_on_both_targets(replicas: int) -> None:
    for instance in docker_settings(replicas):
        assert instance["hot_standby_feedback"] == "on"
        assert instance["hot_standby"] == "on"
    _, parameters = kubernetes_settings(replicas)
    assert parameters["hot_standby_feedback"] == "on"
