"""The Docker Redis under Pulumi's mocks: a node per instance, the one-shot creation step, secrets only as secrets."""

from __future__ import annotations

from functools import cache
from typing import Any

import pulumi
import pytest

from components.redis import RedisCluster
from components.redis.component import TYPE
from components.redis.config import (
    CONF_PATH,
    CREATE_PATH,
    DATA_DIR,
    START_PATH,
    health_test,
    render_cluster_create_script,
    render_redis_conf,
    render_start_script,
)
from model.spec import PlatformSpec
from model.thresholds import redis_monitor_user
from testkit import BanyanMocks, RecordedResource, Rendering, mock_secret_value, walk_plain
from testkit.component import Scaffold, render_component
from testkit.schema_check import input_problems, load_schema
from tests.helpers import env_of, shared_file, spec_for, uploads, waited_on, waited_on_output

CONTAINER = "docker:index/container:Container"
VOLUME = "docker:index/volume:Volume"
PASSWORD = mock_secret_value("secrets-redis")


def render(spec: PlatformSpec, mocks: pulumi.runtime.Mocks | None = None) -> tuple[Rendering, dict[str, Any]]:
    def build(s: Scaffold) -> dict[str, Any]:
        redis = RedisCluster("platform-redis", spec.redis, credentials=s.secrets.redis, target=s.target, opts=s.child)
        return {"hosts": redis.hosts, "port": redis.port, "mode": redis.mode, "wait_on": waited_on(redis)}

    return render_component(spec, build, mocks=mocks)


@cache
def rendered(tier: str = "large") -> tuple[PlatformSpec, Rendering, dict[str, Any]]:
    spec = spec_for(tier=tier)
    rendering, seen = render(spec)
    return spec, rendering, seen


def nodes(rendering: Rendering) -> list[RecordedResource]:
    return sorted((c for c in rendering.of_type(CONTAINER) if c.name.startswith("platform-redis-node-")),
                  key=lambda c: c.inputs["hostname"])


def create_step(rendering: Rendering) -> RecordedResource:
    return rendering.get(CONTAINER, "platform-redis-create")


@pytest.mark.parametrize("tier", ["small", "medium", "large"])
def test_one_container_and_volume_per_node(tier: str) -> None:
    spec, rendering, seen = rendered(tier)
    (component,) = rendering.of_type(TYPE)
    containers = nodes(rendering)
    assert [c.inputs["hostname"] for c in containers] == list(spec.redis.instance_names) == seen["hosts"]
    volumes = {v.inputs["name"]: v for v in rendering.of_type(VOLUME)}
    assert len(volumes) == spec.redis.nodes
    for i, c in enumerate(containers, 1):
        assert c.parent == component.urn
        assert c.inputs["name"] == f"banyan-{spec.stack}-{c.inputs['hostname']}"
        assert c.inputs["image"] == spec.redis.image
        (mount,) = c.inputs["volumes"]
        assert mount["containerPath"] == DATA_DIR
        volume = volumes[mount["volumeName"]]
        assert volume.name == f"platform-redis-node-{i}-data"
        assert mount["volumeName"] == f"{c.inputs['name']}-data"
        assert volume.retain_on_delete and volume.urn in c.depends_on
        assert c.inputs["removeVolumes"] is False


@pytest.mark.parametrize("tier", ["small", "large"])
def test_nodes_ship_the_rendered_files(tier: str) -> None:
    spec, rendering, _ = rendered(tier)
    for c in nodes(rendering):
        shipped = {path: u.content for path, u in uploads(c).items()}
        assert shipped == {CONF_PATH: render_redis_conf(spec.redis, c.inputs["hostname"]),
                           START_PATH: render_start_script(spec.redis)}
        assert c.inputs["entrypoints"] == ["/bin/sh", START_PATH]
        assert c.inputs["healthcheck"]["tests"] == list(health_test(spec.redis))


def test_password_travels_only_as_a_secret() -> None:
    _, rendering, _ = rendered()
    for c in [*nodes(rendering), create_step(rendering)]:
        env = env_of(c, secret=True)
        assert env["REDISCLI_AUTH"] == PASSWORD
        if c.name != "platform-redis-create":
            assert env["REDIS_PASSWORD"] == PASSWORD
            # The nodes define the applications' ACL user with its own password; the creation step never sees it.
            assert env["REDIS_APP_PASSWORD"] == mock_secret_value("secrets-redis-app") != PASSWORD
        else:
            assert "REDIS_APP_PASSWORD" not in env
        leaks = [path for path, value in walk_plain(c.inputs) if isinstance(value, str) and "mocksecret" in value]
        assert leaks == []


def test_with_monitoring_the_nodes_define_the_exporters_user_from_its_own_secret() -> None:
    """Only where the monitoring part is built (not on Swarm, where it is not yet): a stack without it renders the
    nodes as before, and no such password is generated."""
    assert not redis_monitor_user(spec_for()) and not redis_monitor_user(spec_for("prod"))
    assert redis_monitor_user(spec_for("prod", monitoring__enabled=True))
    assert not redis_monitor_user(spec_for("swarm", monitoring__enabled=True))
    _, off, _ = rendered()
    assert not [r for r in off.resources if "redis-monitor" in r.name]
    assert all("REDIS_MONITOR_PASSWORD" not in env_of(c) for c in nodes(off))
    on = spec_for(tier="large", monitoring__enabled=True)
    assert redis_monitor_user(on)
    rendering, _ = render(on)
    for c in nodes(rendering):
        env = env_of(c, secret=True)
        assert env["REDIS_MONITOR_PASSWORD"] == mock_secret_value("secrets-redis-monitor")
        assert env["REDIS_MONITOR_PASSWORD"] not in {env["REDIS_PASSWORD"], env["REDIS_APP_PASSWORD"]}
        assert uploads(c)[START_PATH].content == render_start_script(on.redis, monitor=True)
    assert "REDIS_MONITOR_PASSWORD" not in env_of(create_step(rendering)), "the creation step is the administrator's"


def test_standalone_has_no_creation_step() -> None:
    spec, rendering, seen = rendered("small")
    assert spec.redis.mode == "standalone"
    assert [c.name for c in rendering.of_type(CONTAINER)] == ["platform-redis-node-1"]
    assert seen["mode"] == "standalone" and len(seen["wait_on"]) == 1


@pytest.mark.parametrize("tier", ["medium", "large"])
def test_the_creation_step_runs_once_after_every_node_is_healthy(tier: str) -> None:
    spec, rendering, seen = rendered(tier)
    step = create_step(rendering)
    (component,) = rendering.of_type(TYPE)
    assert step.parent == component.urn
    assert step.inputs["hostname"] == "redis-cluster-create"
    assert step.inputs["name"] == f"banyan-{spec.stack}-redis-cluster-create"
    # attach: the provider waits for the exit; must_run False: an exited container is the success case.
    assert step.inputs["attach"] is True and step.inputs["mustRun"] is False and step.inputs["logs"] is True
    assert step.inputs["restart"] == "no"
    assert step.inputs["wait"] is False and "healthcheck" not in step.inputs
    assert step.delete_before_replace, "a fixed container name cannot exist twice during a replace"
    node_urns = {c.urn for c in nodes(rendering)}
    assert node_urns <= set(step.depends_on)
    assert all(c.inputs["wait"] is True for c in nodes(rendering)), "healthy before the step starts"
    assert step.inputs["uploads"] == [{"file": CREATE_PATH, "content": render_cluster_create_script(spec.redis),
                                       "executable": True}]
    assert step.inputs["entrypoints"] == ["/bin/sh", CREATE_PATH]
    assert len(seen["wait_on"]) == spec.redis.nodes + 1, "dependants wait for the step too"


def test_outputs_are_registered() -> None:
    spec, rendering, seen = rendered()
    (component,) = rendering.of_type(TYPE)
    assert component.outputs["hosts"] == seen["hosts"] == list(spec.redis.instance_names)
    assert component.outputs["port"] == seen["port"] == spec.redis.port
    assert component.outputs["mode"] == seen["mode"] == "cluster"
    assert len(waited_on_output(component)) == spec.redis.nodes + 1
    assert component.outputs["ready"] is True


def test_docker_inputs_validate_against_the_provider_schema() -> None:
    schema = load_schema(shared_file("schemas", "pulumi-docker", "schema.json"))
    for tier in ("small", "large"):
        _, rendering, _ = rendered(tier)
        problems = {r.name: input_problems(schema, r.type, r.inputs)
                    for r in rendering.resources if r.type.startswith("docker:")}
        assert {k: v for k, v in problems.items() if v} == {}


class FailedCreation(BanyanMocks):
    """The provider's answer when the creation container exited non-zero."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        rid, state = super().new_resource(args)
        if args.name.endswith("-create"):
            state |= {"exitCode": 1, "containerLogs": "create-cluster: cannot resolve redis-node-4\n"}
        return rid, state


def test_a_failed_creation_fails_the_update_with_its_log() -> None:
    spec = spec_for(tier="large")
    with pytest.raises(pulumi.RunError, match=r"exited with 1(.|\n)*cannot resolve redis-node-4(.|\n)*--replace"):
        render(spec, FailedCreation())


def test_other_targets_are_refused() -> None:
    spec = spec_for()
    with pytest.raises(TypeError, match="DockerTarget or a KubernetesTarget"):
        RedisCluster("redis", spec.redis, credentials=None, target=object())  # type: ignore[arg-type]
