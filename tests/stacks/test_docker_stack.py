"""The whole dev stack (Docker target) rendered from Pulumi.dev.yaml under mocks, for every tier."""

from __future__ import annotations

import re
from collections import Counter
from functools import cache
from typing import Any

import pytest

from model.tiers import TIERS
from testkit import RecordedResource, Rendering, mock_secret_value, render_stack, unwrap, walk_plain
from testkit.schema_check import input_problems, load_schema
from tests.helpers import env_of, shared_file, uploads

TIERS_ = ("small", "medium", "large")
CONTAINER = "docker:index/container:Container"
VOLUME = "docker:index/volume:Volume"
NETWORK = "docker:index/network:Network"
STATEFUL_PREFIXES = ("postgres-", "rabbitmq-", "redis-node-")


@cache
def rendered(tier: str) -> Rendering:
    return render_stack("dev", set={"tier": tier})


def containers(r: Rendering) -> dict[str, RecordedResource]:
    return {c.plain_inputs["hostname"]: c for c in r.of_type(CONTAINER)}


def long_running(r: Rendering) -> dict[str, RecordedResource]:
    """Containers that stay up (a one-shot setup step runs once and exits)."""
    return {n: c for n, c in containers(r).items() if c.plain_inputs.get("mustRun") is not False}


@pytest.mark.parametrize("tier", TIERS_)
def test_container_counts_follow_the_planning_table(tier: str) -> None:
    names = set(long_running(rendered(tier)))
    preset = TIERS[tier]

    def count(pattern: str) -> int:
        return sum(1 for n in names if re.fullmatch(pattern, n))

    assert count(r"api-gateway-\d+") == preset.gateway_instances
    assert count(r"user-service-\d+") == preset.service_instances
    assert count(r"order-service-\d+") == preset.service_instances
    assert count(r"postgres-primary") == 1
    assert count(r"postgres-replica-\d+") == preset.postgres_replicas
    assert count(r"rabbitmq-\d+") == preset.rabbitmq_nodes
    assert count(r"redis-node-\d+") == preset.redis_nodes
    assert count(r"nginx") == 1
    expected = (preset.gateway_instances + 2 * preset.service_instances + 1 + preset.postgres_replicas
                + preset.rabbitmq_nodes + preset.redis_nodes + 1)
    assert len(names) == expected


@pytest.mark.parametrize("tier", TIERS_)
def test_every_docker_input_validates_against_the_provider_schema(tier: str) -> None:
    schema = load_schema(shared_file("schemas", "pulumi-docker", "schema.json"))
    docker_resources = [r for r in rendered(tier).resources if r.type.startswith("docker:")]
    assert docker_resources
    problems = {f"{r.type} {r.name}": input_problems(schema, r.type, r.inputs) for r in docker_resources}
    assert {k: v for k, v in problems.items() if v} == {}


def test_the_schema_check_catches_a_misspelt_key() -> None:
    schema = load_schema(shared_file("schemas", "pulumi-docker", "schema.json"))
    c = next(iter(containers(rendered("small")).values()))
    broken = {**c.inputs, "networkAdvanced": c.inputs["networksAdvanced"], "memory": "2G"}
    broken.pop("image")
    found = input_problems(schema, CONTAINER, broken)
    assert any(p.startswith("networkAdvanced") for p in found)
    assert any(p.startswith("memory: expected integer") for p in found)
    assert any(p.startswith("image: required") for p in found)


_URL_HOST = re.compile(r"[a-z]+://(?:[^@/\s]*@)?([A-Za-z0-9.-]+):\d+")
_HOST_PORT = re.compile(r"(?<![\w@./:-])([a-z][a-z0-9-]*[a-z0-9]):(\d{2,5})\b")


def referenced_hosts(r: Rendering) -> set[str]:
    """Host names the env vars and the shipped config files point at."""
    hosts: set[str] = set()
    for c in containers(r).values():
        texts = list(env_of(c).values()) + [u.content for u in uploads(c).values()]
        for text in texts:
            hosts.update(_URL_HOST.findall(text))
            hosts.update(h for h, _ in _HOST_PORT.findall(text))
            hosts.update(re.findall(r"rabbit@([a-z0-9-]+)", text))
    return {h for h in hosts if h not in {"localhost", "127.0.0.1"}}


@pytest.mark.parametrize("tier", TIERS_)
def test_every_referenced_host_is_a_container_on_the_platform_network(tier: str) -> None:
    r = rendered(tier)
    (network,) = r.of_type(NETWORK)
    net_name = network.plain_inputs["name"]
    for name, c in containers(r).items():
        attached = {n["name"] for n in c.plain_inputs["networksAdvanced"]}
        assert attached == {net_name}, name
    hosts = referenced_hosts(r)
    assert {"postgres-primary", "rabbitmq-1", "api-gateway-1"} <= hosts
    assert hosts <= set(containers(r)), hosts - set(containers(r))


@pytest.mark.parametrize("tier", TIERS_)
def test_nginx_upstream_is_exactly_the_gateway_containers(tier: str) -> None:
    r = rendered(tier)
    conf = uploads(containers(r)["nginx"])["/etc/nginx/nginx.conf"].content
    upstream = re.search(r"upstream\s+\S+\s*\{(.*?)\}", conf, re.S)
    assert upstream is not None
    servers = re.findall(r"^\s*server\s+([a-z0-9-]+):(\d+)", upstream.group(1), re.M)
    gateways = sorted(n for n in containers(r) if n.startswith("api-gateway-"))
    assert sorted(h for h, _ in servers) == gateways
    assert {int(p) for _, p in servers} == {3003}


@pytest.mark.parametrize("tier", TIERS_)
def test_no_secret_value_appears_as_a_plain_input_or_output(tier: str) -> None:
    r = rendered(tier)
    secrets = [mock_secret_value(x.name) for x in r.resources if x.type.startswith("random:")]
    assert len(secrets) >= 5
    leaks = []
    for res in r.resources:
        for path, value in [*walk_plain(res.inputs), *walk_plain(res.outputs)]:
            if isinstance(value, str) and any(s in value for s in secrets):
                leaks.append(f"{res.type} {res.name}: {path}")
    for path, value in walk_plain(r.stack_outputs):
        if isinstance(value, str) and any(s in value for s in secrets):
            leaks.append(f"stack output {path}")
    assert leaks == []
    # ...and the secrets do reach the containers that need them, as secrets.
    env = env_of(containers(r)["user-service-1"])
    assert any(s in env["DATABASE_URL"] for s in secrets)


def _fingerprint(r: Rendering) -> list[tuple[Any, ...]]:
    # Registration order follows asyncio scheduling; what the engine diffs is each resource's record.
    return sorted((x.type, x.name, x.parent or "", repr(unwrap(x.inputs)), x.protect, x.retain_on_delete,
                   tuple(sorted(x.depends_on)), x.ignore_changes) for x in r.resources)


def test_rendering_twice_gives_identical_inputs() -> None:
    first = render_stack("dev", set={"tier": "medium"})
    second = render_stack("dev", set={"tier": "medium"})
    assert _fingerprint(first) == _fingerprint(second)


@pytest.mark.parametrize(("before", "after"), [("small", "medium"), ("medium", "large"), ("large", "small")])
def test_changing_the_tier_keeps_every_volume_and_stateful_name(before: str, after: str) -> None:
    a, b = rendered(before), rendered(after)
    vols_a = {v.name: v.plain_inputs for v in a.of_type(VOLUME)}
    vols_b = {v.name: v.plain_inputs for v in b.of_type(VOLUME)}
    shared = vols_a.keys() & vols_b.keys()
    assert "banyan-postgres-primary-data" in shared
    for name in shared:
        assert vols_a[name] == vols_b[name], f"volume {name} would be replaced"
    stateful_a = {c.name: c.plain_inputs["hostname"] for c in a.of_type(CONTAINER)
                  if c.plain_inputs["hostname"].startswith(STATEFUL_PREFIXES)}
    stateful_b = {c.name: c.plain_inputs["hostname"] for c in b.of_type(CONTAINER)
                  if c.plain_inputs["hostname"].startswith(STATEFUL_PREFIXES)}
    for logical in stateful_a.keys() & stateful_b.keys():
        assert stateful_a[logical] == stateful_b[logical]
        mounts_a = containers(a)[stateful_a[logical]].plain_inputs.get("volumes")
        mounts_b = containers(b)[stateful_b[logical]].plain_inputs.get("volumes")
        assert mounts_a == mounts_b, logical


@pytest.mark.parametrize("tier", TIERS_)
def test_images_are_pinned_and_containers_are_bounded_restarted_and_checked(tier: str) -> None:
    r = rendered(tier)
    images = {x.plain_inputs["name"] for x in r.of_type("docker:index/remoteImage:RemoteImage")}
    for c in containers(r).values():
        assert c.plain_inputs["image"] in images
    for ref in images:
        last = ref.rsplit("/", 1)[-1]
        assert ":" in last and not last.endswith(":latest"), ref
    for name, c in long_running(r).items():
        inputs = c.plain_inputs
        assert inputs["memory"] > 0 and float(inputs["cpus"]) > 0, name
        assert inputs["memoryReservation"] <= inputs["memory"], name
        assert inputs["restart"] in ("always", "unless-stopped", "on-failure"), name
        assert inputs["healthcheck"]["tests"][0] in ("CMD", "CMD-SHELL"), name
        assert inputs["wait"] is True, f"{name}: `pulumi up` must wait for health"


@pytest.mark.parametrize("tier", TIERS_)
def test_volumes_are_retained_and_protected_as_the_stack_says(tier: str) -> None:
    r = rendered(tier)
    vols = r.of_type(VOLUME)
    assert len(vols) >= 3
    assert all(v.retain_on_delete for v in vols)
    assert not any(v.protect for v in vols)  # the dev stack does not protect
    protected = render_stack("dev", set={"tier": tier, "protect": True}).of_type(VOLUME)
    assert all(v.protect and v.retain_on_delete for v in protected)


@pytest.mark.parametrize("tier", TIERS_)
def test_the_dev_edge_stays_on_loopback_unless_the_stack_opens_it(tier: str) -> None:
    r = rendered(tier)
    published = {n: c.plain_inputs.get("ports") or [] for n, c in containers(r).items()}
    public = {n for n, ports in published.items() for p in ports if p.get("ip", "0.0.0.0") != "127.0.0.1"}
    assert public == set(), "by default nothing is published beyond the host's loopback"
    assert [(p["ip"], p["external"]) for p in published["nginx"]] == [("127.0.0.1", 8080)]
    mgmt = published["rabbitmq-1"]
    assert [(p["ip"], p["external"]) for p in mgmt] == [("127.0.0.1", 15672)]
    opened = render_stack("dev", set={"tier": tier, "nginx.publish_address": "0.0.0.0"})
    published = {n: c.plain_inputs.get("ports") or [] for n, c in containers(opened).items()}
    public = {n for n, ports in published.items() for p in ports if p.get("ip", "0.0.0.0") != "127.0.0.1"}
    assert public == {"nginx"}, "the one key opens Nginx, and only Nginx"
    assert any("publishes the platform beyond this host" in w for w in opened.warnings)


def test_components_use_the_banyan_type_tokens_and_children_their_parents_names() -> None:
    r = rendered("medium")
    components = [x for x in r.resources if not x.custom]
    assert Counter(x.type.split(":")[0] for x in components)["banyan"] == len(components)
    by_urn = {x.urn: x for x in r.resources}
    for x in r.resources:
        parent = by_urn.get(x.parent or "")
        if parent is not None:
            assert x.name.startswith(parent.name), (x.name, parent.name)


def test_stack_outputs() -> None:
    out = rendered("small").stack_outputs
    assert out["public_url"] == "http://localhost:8080"
    assert out["rabbitmq_management_url"] == "http://127.0.0.1:15672"
    for key in ("database_url", "database_replica_urls", "rabbitmq_urls", "redis_url"):
        assert type(out[key]).__name__ == "Secret", key
