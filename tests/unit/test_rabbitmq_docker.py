"""The Docker RabbitMQ cluster under Pulumi's mocks: one container per node, secrets only as secrets, loopback UI."""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest

from components.rabbitmq import RabbitMQCluster
from components.rabbitmq.component import TYPE
from components.rabbitmq.config import (
    CONF_PATH,
    COOKIE_ENV,
    DATA_DIR,
    ENTRYPOINT_PATH,
    PLUGINS_PATH,
    render_enabled_plugins,
    render_entrypoint,
    render_rabbitmq_conf,
)
from model.readback import go_duration
from model.spec import PlatformSpec
from testkit import RecordedResource, Rendering, mock_secret_value, walk_plain
from testkit.component import Scaffold, render_component
from testkit.schema_check import input_problems, load_schema
from tests.helpers import env_of, shared_file, spec_for, uploads, waited_on, waited_on_output

CONTAINER = "docker:index/container:Container"
VOLUME = "docker:index/volume:Volume"


def render(spec: PlatformSpec) -> tuple[Rendering, dict[str, Any]]:
    def build(s: Scaffold) -> dict[str, Any]:
        cluster = RabbitMQCluster("platform-rabbitmq", spec.rabbitmq, credentials=s.secrets.rabbitmq, target=s.target,
                                  opts=s.child)
        return {"hosts": cluster.hosts, "port": cluster.port, "management_port": cluster.management_port,
                "management_url": cluster.management_url, "wait_on": waited_on(cluster)}

    return render_component(spec, build)


@cache
def rendered(tier: str = "medium", **sets: Any) -> tuple[PlatformSpec, Rendering, dict[str, Any]]:
    spec = spec_for(tier=tier, **sets)
    rendering, seen = render(spec)
    return spec, rendering, seen


def nodes(rendering: Rendering) -> list[RecordedResource]:
    return sorted(rendering.of_type(CONTAINER), key=lambda c: c.inputs["hostname"])


@pytest.mark.parametrize("tier", ["small", "medium", "large"])
def test_one_container_per_node_named_and_addressed_by_its_node_name(tier: str) -> None:
    spec, rendering, seen = rendered(tier)
    (component,) = rendering.of_type(TYPE)
    containers = nodes(rendering)
    assert [c.inputs["hostname"] for c in containers] == list(spec.rabbitmq.instance_names) == seen["hosts"]
    for c in containers:
        assert c.parent == component.urn
        assert c.inputs["name"] == f"banyan-{spec.stack}-{c.inputs['hostname']}"
        assert env_of(c, secret=True)["RABBITMQ_NODENAME"] == f"rabbit@{c.inputs['hostname']}"
        assert c.inputs["image"] == spec.rabbitmq.image


def test_every_node_ships_the_same_rendered_files() -> None:
    spec, rendering, _ = rendered()
    expected = {
        CONF_PATH: render_rabbitmq_conf(spec.rabbitmq),
        PLUGINS_PATH: render_enabled_plugins(spec.rabbitmq),
        ENTRYPOINT_PATH: render_entrypoint(),
    }
    for c in nodes(rendering):
        shipped = uploads(c)
        assert {path: u.content for path, u in shipped.items()} == expected
        assert [path for path, u in shipped.items() if u.executable] == [ENTRYPOINT_PATH]
        assert c.inputs["entrypoints"] == [ENTRYPOINT_PATH]
        assert c.inputs["command"] == ["rabbitmq-server"]


def test_credentials_travel_only_as_secrets() -> None:
    _, rendering, _ = rendered()
    for c in nodes(rendering):
        env = env_of(c, secret=True)
        assert env["RABBITMQ_DEFAULT_USER"] == "banyan-admin"
        assert env["RABBITMQ_DEFAULT_PASS"] == mock_secret_value("secrets-rabbitmq-admin")
        assert env[COOKIE_ENV] == mock_secret_value("secrets-rabbitmq-erlang-cookie")
        assert "RABBITMQ_ERLANG_COOKIE" not in env, "deprecated: the CLI warns on every health check"
        leaks = [path for path, value in walk_plain(c.inputs) if isinstance(value, str) and "mocksecret" in value]
        assert leaks == []
        assert "guest" not in env.values()


def test_the_image_conf_d_cannot_override_the_rendered_file() -> None:
    _, rendering, _ = rendered()
    for c in nodes(rendering):
        extra = env_of(c, secret=True)["RABBITMQ_CONFIG_FILES"]
        assert not extra.startswith("/etc/rabbitmq/conf.d"), "the image's 10-defaults.conf opens guest to the network"


def test_management_is_published_on_loopback_for_node_1_only() -> None:
    spec, rendering, seen = rendered("medium", rabbitmq__management_host_port=15999)
    first, *others = nodes(rendering)
    assert first.inputs["ports"] == [{"internal": spec.rabbitmq.management_port, "external": 15999,
                                      "ip": "127.0.0.1", "protocol": "tcp"}]
    assert all(not c.inputs.get("ports") for c in others)
    assert seen["management_url"] == "http://127.0.0.1:15999"


def test_nothing_is_published_without_a_management_host_port() -> None:
    _, rendering, seen = rendered("medium", rabbitmq__management_host_port=None)
    assert all(not c.inputs.get("ports") for c in nodes(rendering))
    assert seen["management_url"] is None


def test_each_node_keeps_its_data_in_its_own_retained_volume() -> None:
    spec, rendering, _ = rendered()
    volumes = {v.urn: v for v in rendering.of_type(VOLUME)}
    assert len(volumes) == spec.rabbitmq.nodes
    for c in nodes(rendering):
        (mount,) = c.inputs["volumes"]
        assert mount["containerPath"] == DATA_DIR
        assert mount["volumeName"] == f"{c.inputs['name']}-data"
        assert c.inputs["removeVolumes"] is False
        (volume,) = [v for v in volumes.values() if v.inputs["name"] == mount["volumeName"]]
        assert volume.retain_on_delete
        assert volume.urn in c.depends_on


def test_no_volume_without_persistence() -> None:
    _, rendering, _ = rendered("medium", rabbitmq__persistence=False)
    assert rendering.of_type(VOLUME) == []
    assert all(not c.inputs.get("volumes") for c in nodes(rendering))


def test_nodes_start_together() -> None:
    """Peer discovery orders the cluster; a node waiting on another's health could deadlock a restart."""
    _, rendering, _ = rendered()
    urns = {c.urn for c in nodes(rendering)}
    assert all(not (set(c.depends_on) & urns) for c in nodes(rendering))


def test_health_check_uses_the_broker_own_diagnostics() -> None:
    _, rendering, _ = rendered()
    for c in nodes(rendering):
        health = c.inputs["healthcheck"]
        assert health["tests"][0] == "CMD-SHELL"
        assert "rabbitmq-diagnostics -q check_running" in health["tests"][1]
        assert health["startPeriod"] in {go_duration(s) for s in range(30, 3600)}, \
            "Erlang boot and clustering take that long"


def test_outputs_are_registered() -> None:
    spec, rendering, seen = rendered()
    (component,) = rendering.of_type(TYPE)
    assert component.outputs["hosts"] == seen["hosts"] == list(spec.rabbitmq.instance_names)
    assert component.outputs["port"] == seen["port"] == spec.rabbitmq.port
    assert component.outputs["management_port"] == seen["management_port"] == spec.rabbitmq.management_port
    assert component.outputs.get("management_url") == seen["management_url"]
    assert len(waited_on_output(component)) == len(seen["wait_on"]) == spec.rabbitmq.nodes


def test_docker_inputs_validate_against_the_provider_schema() -> None:
    schema = load_schema(shared_file("schemas", "pulumi-docker", "schema.json"))
    _, rendering, _ = rendered()
    problems = {r.name: input_problems(schema, r.type, r.inputs)
                for r in rendering.resources if r.type.startswith("docker:")}
    assert {k: v for k, v in problems.items() if v} == {}


def test_other_targets_are_refused() -> None:
    spec = spec_for()
    with pytest.raises(TypeError, match="DockerTarget or a KubernetesTarget"):
        RabbitMQCluster("rabbitmq", spec.rabbitmq, credentials=None, target=object())  # type: ignore[arg-type]
