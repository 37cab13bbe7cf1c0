"""The Docker load balancer under Pulumi's mocks: one public container running the rendered nginx.conf."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_docker as docker
import pytest

from components.nginx import NginxLoadBalancer
from components.nginx.component import TYPE
from components.nginx.config import HEALTH_PATH, render_nginx_conf
from components.nginx.docker import DOCKER_DNS
from model.spec import PlatformSpec
from testkit import RecordedResource, Rendering
from testkit.component import Scaffold, render_component
from tests.helpers import shared_file, spec_for, waited_on, waited_on_output

CONTAINER = "docker:index/container:Container"
UPSTREAMS = ("api-gateway-1", "api-gateway-2", "api-gateway-3")
PORT = 3003


def render(spec: PlatformSpec) -> tuple[Rendering, dict[str, Any]]:
    def build(s: Scaffold) -> dict[str, Any]:
        gateway = pulumi.ComponentResource("banyan:index:Gateway", "gw", opts=s.child)
        docker.Volume("gw-standin", opts=pulumi.ResourceOptions(parent=gateway))
        lb = NginxLoadBalancer(
            "nginx", spec.nginx, upstreams=UPSTREAMS, upstream_port=PORT, target=s.target,
            opts=pulumi.ResourceOptions(parent=s.root, depends_on=[gateway]),
        )
        return {"public_url": lb.public_url, "upstreams": lb.upstreams, "wait_on": waited_on(lb)}

    return render_component(spec, build)


@pytest.fixture(scope="module")
def rendered() -> tuple[PlatformSpec, Rendering, dict[str, Any]]:
    spec = spec_for()
    rendering, seen = render(spec)
    return spec, rendering, seen


def the_container(rendering: Rendering) -> RecordedResource:
    (container,) = rendering.of_type(CONTAINER)
    return container


def test_one_container_named_after_the_instance(rendered: tuple[PlatformSpec, Rendering, dict[str, Any]]) -> None:
    spec, rendering, _ = rendered
    (component,) = rendering.of_type(TYPE)
    container = the_container(rendering)
    assert container.parent == component.urn
    assert container.name.startswith(component.name)
    assert container.inputs["hostname"] == spec.nginx.instance_names[0] == "nginx"
    assert container.inputs["name"] == f"banyan-{spec.stack}-nginx", "scoped: stacks share a host"
    assert container.inputs["image"] == spec.nginx.image


def test_ships_the_rendered_file(rendered: tuple[PlatformSpec, Rendering, dict[str, Any]]) -> None:
    spec, rendering, _ = rendered
    uploads = the_container(rendering).inputs["uploads"]
    assert uploads == [
        {"file": "/etc/nginx/nginx.conf",
         "content": render_nginx_conf(spec.nginx, UPSTREAMS, PORT, resolver=DOCKER_DNS)},
    ]
    assert "resolve;" in uploads[0]["content"], "the pinned 1.27.3 image re-resolves gateway names"


def test_only_the_public_port_is_published_beyond_loopback(
    rendered: tuple[PlatformSpec, Rendering, dict[str, Any]],
) -> None:
    spec, rendering, seen = rendered
    ports = the_container(rendering).inputs["ports"]
    assert ports == [{"internal": spec.nginx.listen_port, "external": spec.nginx.public_port,
                      "ip": spec.nginx.publish_address, "protocol": "tcp"}]
    assert spec.nginx.publish_address == "127.0.0.1", "loopback unless the stack opens it"
    assert seen["public_url"] == f"http://localhost:{spec.nginx.public_port}"


def test_health_check_hits_the_local_endpoint(rendered: tuple[PlatformSpec, Rendering, dict[str, Any]]) -> None:
    spec, rendering, _ = rendered
    test = the_container(rendering).inputs["healthcheck"]["tests"]
    assert test[:2] == ["CMD", "wget"]
    assert test[-1] == f"http://127.0.0.1:{spec.nginx.listen_port}{HEALTH_PATH}"


def test_starts_after_what_it_is_given(rendered: tuple[PlatformSpec, Rendering, dict[str, Any]]) -> None:
    _, rendering, _ = rendered
    # A component stands for its children: the gateway's container(s) must be up first.
    standin = rendering.get("docker:index/volume:Volume", "gw-standin")
    assert standin.urn in the_container(rendering).depends_on


def test_outputs_are_registered(rendered: tuple[PlatformSpec, Rendering, dict[str, Any]]) -> None:
    _, rendering, seen = rendered
    (component,) = rendering.of_type(TYPE)
    assert component.outputs["public_url"] == seen["public_url"]
    assert component.outputs["upstreams"] == list(UPSTREAMS) == seen["upstreams"]
    assert len(waited_on_output(component)) == len(seen["wait_on"]) == 1


def test_container_inputs_are_in_the_provider_schema(
    rendered: tuple[PlatformSpec, Rendering, dict[str, Any]],
) -> None:
    _, rendering, _ = rendered
    schema = json.loads(shared_file("schemas", "pulumi-docker", "schema.json").read_text())
    allowed = schema["resources"][CONTAINER]["inputProperties"]
    assert set(the_container(rendering).inputs) <= set(allowed)
