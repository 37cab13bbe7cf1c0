"""The Docker preflight (infra/preflight.py) against a real engine: the dev stack is driven onto it and the
preflight of a second stack, or of a smaller tier of dev itself, reads what the engine holds.

    sudo .venv/bin/pytest tests/e2e/docker/test_preflight_engine.py -rA

Also two stacks of the project up on one engine at once (dev and dev2, their own public and management
ports), each answering through its own Nginx. Skips without an engine or images, fails instead with
BANYAN_REQUIRE_DOCKER=1; the engine lock and fixtures are the main suite's.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from typing import Any

import pika
import pika.exceptions
import pulumi
import pytest

from infra import preflight
from infra.program import load_spec, main
from model.preflight import Findings, check
from model.spec import PlatformSpec
from testkit import Rendering, apply_sets, read_stack_file, render_program, to_engine_config
from tests.e2e.docker.driver import (
    IMAGE,
    Engine,
    LocalImage,
    StackDriver,
    local_images,
    local_stack_sets,
    wait_until,
)
from tests.e2e.docker.test_docker_engine import driven, engine, http_get, images, measured, rendered

__all__ = ["engine", "images"]  # the session fixtures, shared with the main suite (same lock)

DEV2_PORTS = {"nginx.port": 8081, "rabbitmq.management_host_port": 15673}


@functools.cache
def _local_versions() -> dict[str, Any]:
    """The version and image settings of the engine's local images (what the driven stacks are rendered with),
    so that a preflight compares like with like (a PostgreSQL major change is refused, rightly)."""
    return local_stack_sets(local_images(Engine()))


def spec_of(stack: str, **sets: Any) -> PlatformSpec:
    """The dev stack file as stack `stack` would resolve it, for the local images' versions (keys as for `--set`,
    dots as double underscores)."""
    merged = {**_local_versions(), **{k.replace("__", "."): v for k, v in sets.items()}}
    raw, secret = to_engine_config(apply_sets(read_stack_file("dev"), merged))
    return load_spec(raw, project="banyan", stack=stack, secret_keys=secret)


def environ_for(engine: Engine) -> dict[str, str]:
    if not engine.host.startswith("unix://"):
        pytest.skip(f"the preflight reads local unix sockets only; this engine is {engine.host}")
    return {"DOCKER_HOST": engine.host}


def findings(spec: PlatformSpec, engine: Engine) -> Findings:
    """What the preflight finds on the real engine, read by the program's own I/O layer."""
    located = preflight.locate({}, environ_for(engine))
    assert located.socket_path is not None, located.skip_reason
    started = time.monotonic()
    snapshot = preflight.read_engine(located.socket_path)
    measured(f"preflight read {len(snapshot.containers)} containers in {(time.monotonic() - started) * 1000:.1f} ms")
    return check(spec, snapshot)


def lines(found: Findings) -> list[str]:
    return [p.render() for p in found.problems]


def render_dev2(images: dict[str, LocalImage]) -> Rendering:
    """A second stack of the project from the dev stack file, with its own ports."""
    sets = {"tier": "small", **local_stack_sets(images), **DEV2_PORTS}
    raw, secret = to_engine_config(apply_sets(read_stack_file("dev"), sets))
    return render_program(main, raw, project="banyan", stack="dev2", secret_keys=secret)


class TestTwoStacksOnOneEngine:
    """dev (8080, 15672) up; then dev2 (8081, 15673) up beside it."""

    @pytest.fixture(scope="class")
    @classmethod
    def dev(cls, engine: Engine, images: dict[str, LocalImage]) -> Iterator[StackDriver]:
        with driven(rendered("small", images), images, engine) as driver:
            measured(f"dev small: {len(driver.instances())} containers up and healthy in {driver.up_seconds:.1f}s")
            yield driver

    def test_a_second_stack_on_the_same_ports_is_refused_naming_the_holders(
            self, dev: StackDriver, engine: Engine) -> None:
        found = lines(findings(spec_of("dev2"), engine))
        assert len(found) == 2, found
        assert found[0].startswith("banyan:nginx.port: got 8080; host port 8080 is already published by container "
                                   "banyan-dev-nginx (banyan.stack dev)")
        assert found[1].startswith("banyan:rabbitmq.management_host_port: got 15672; host port 15672 is already "
                                   "published by container banyan-dev-rabbitmq-1 (banyan.stack dev)")
        assert all("choose another port for this stack" in line for line in found)
        # The program's own path: it reads the engine, and refuses with a RunError.
        with pytest.raises(preflight.PreflightError) as caught:
            preflight.check_engine(spec_of("dev2"), {}, environ_for(engine))
        assert str(caught.value).startswith(f"the Docker engine at {engine.host} already holds what this stack "
                                            "would break (2 problems); nothing was deployed:")

    def test_other_ports_or_the_stack_itself_pass(self, dev: StackDriver, engine: Engine,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
        assert lines(findings(spec_of("dev2", **DEV2_PORTS), engine)) == []
        assert lines(findings(spec_of("dev"), engine)) == []
        warned: list[str] = []
        monkeypatch.setattr(pulumi.log, "warn", lambda msg, *_, **__: warned.append(msg))
        preflight.check_engine(spec_of("dev"), {}, environ_for(engine))
        assert warned == []

    def test_two_stacks_answer_through_their_own_nginx(self, dev: StackDriver, engine: Engine,
                                                       images: dict[str, LocalImage]) -> None:
        second = render_dev2(images)
        with driven(second, images, engine) as dev2:
            measured(f"dev2 small beside dev: {len(dev2.instances())} containers up and healthy in "
                     f"{dev2.up_seconds:.1f}s")
            for port, stack in ((8080, dev), (8081, dev2)):
                assert http_get(f"http://127.0.0.1:{port}/nginx-health") == (200, "ok\n"), port
                status, body = http_get(f"http://127.0.0.1:{port}/")
                assert status == 200 and "Directory listing for /" in body, port
                assert stack.health("nginx") == "healthy"
            def owned(stack: StackDriver) -> set[str]:
                """Container, volume and network names (images are shared by reference)."""
                return {s.inputs["name"] for s in stack.steps.values() if s.resource.type != IMAGE}

            assert "banyan-dev2-nginx" in owned(dev2) and not owned(dev2) & owned(dev)
            # Both up: neither stack's preflight sees a problem; a third stack on dev2's port is refused.
            assert lines(findings(spec_of("dev2", **DEV2_PORTS), engine)) == []
            assert lines(findings(spec_of("dev"), engine)) == []
            (clash,) = lines(findings(spec_of("dev3", nginx__port=8081, rabbitmq__management_host_port=None),
                                      engine))
            assert clash.startswith("banyan:nginx.port: got 8081; host port 8081 is already published by container "
                                    "banyan-dev2-nginx (banyan.stack dev2)")


def _amqp_open(params: pika.ConnectionParameters) -> bool:
    try:
        pika.BlockingConnection(params).close()
    except pika.exceptions.AMQPConnectionError:
        return False
    return True


def _rabbitmqctl(stack: StackDriver, *argv: str) -> str:
    result = stack.exec("rabbitmq-1", list(argv), timeout_s=120)
    assert result.exit_code == 0, (argv, result.stdout, result.stderr)
    return result.stdout


def test_a_medium_to_small_shrink_of_the_running_clusters_is_refused_until_the_procedure_is_done(
        engine: Engine, images: dict[str, LocalImage]) -> None:
    with driven(rendered("medium", images), images, engine, "rabbitmq", "redis") as stack:
        measured(f"dev medium rabbitmq + redis up in {stack.up_seconds:.1f}s")
        found = lines(findings(spec_of("dev", tier="small"), engine))
        assert len(found) == 2, found
        assert found[0].startswith('banyan:tier: got "small"; RabbitMQ would shrink from 3 nodes to 1 (the small '
                                   "tier's count), but rabbitmq-2, rabbitmq-3 are running as cluster members")
        assert "rabbitmqctl forget_cluster_node" in found[0] and "rabbitmq-queues shrink" in found[0]
        assert found[1].startswith('banyan:tier: got "small"; Redis would change from a 3-node cluster '
                                   "(redis-node-1, redis-node-2, redis-node-3) to 1 node (standalone)")
        assert "redis-cli --cluster reshard" in found[1] and "del-node" in found[1]
        with pytest.raises(preflight.PreflightError, match=r"\(2 problems\)"):
            preflight.check_engine(spec_of("dev", tier="small"), {}, environ_for(engine))
        # The same tier passes; growing both clusters is allowed (test_day2 moves a stack up for real).
        assert lines(findings(spec_of("dev", tier="medium"), engine)) == []
        grow = findings(spec_of("dev", tier="large"), engine)
        # Only a limit above this host's CPUs, if it is that small (test_day2 fits them and moves up for real).
        assert all(p.key.endswith(".resources.limits.cpu_millis") for p in grow.problems), lines(grow)
        assert any(w.startswith("Redis grows from a 3-node cluster") for w in grow.warnings), grow.warnings

        # The documented RabbitMQ procedure, one node at a time, with a quorum queue holding a message.
        env = stack.env("rabbitmq-1")
        credentials = pika.PlainCredentials(env["BANYAN_RABBITMQ_APP_USER"], env["BANYAN_RABBITMQ_APP_PASSWORD"])
        params = pika.ConnectionParameters(stack.address("rabbitmq-1"), 5672, "/", credentials)
        with pika.BlockingConnection(params) as conn:
            channel = conn.channel()
            channel.confirm_delivery()
            channel.queue_declare("banyan-e2e-preflight", durable=True, arguments={"x-queue-type": "quorum"})
            channel.basic_publish("", "banyan-e2e-preflight", b"kept", pika.BasicProperties(delivery_mode=2))
        started = time.monotonic()
        for node in ("rabbitmq-3", "rabbitmq-2"):
            _rabbitmqctl(stack, "rabbitmq-queues", "shrink", f"rabbit@{node}")
            engine.call("POST", f"/containers/{stack.container_id(node)}/stop", query={"t": 30}, timeout_s=60)
            _rabbitmqctl(stack, "rabbitmqctl", "forget_cluster_node", f"rabbit@{node}")
        # pause_minority (rendered for 3 nodes) paused the last node when it was one of two, as the message says.
        assert not _amqp_open(params)
        _rabbitmqctl(stack, "rabbitmqctl", "stop_app")
        _rabbitmqctl(stack, "rabbitmqctl", "start_app")
        wait_until(lambda: _amqp_open(params), timeout_s=60, what="rabbitmq-1 serving AMQP again")
        measured(f"rabbitmq 3 -> 1 by the procedure in {time.monotonic() - started:.1f}s")
        assert "rabbit@rabbitmq-2" not in _rabbitmqctl(stack, "rabbitmqctl", "cluster_status")
        with pika.BlockingConnection(params) as conn:
            method, _, body = conn.channel().basic_get("banyan-e2e-preflight", auto_ack=True)
        assert method is not None and body == b"kept"

        after = findings(spec_of("dev", tier="small"), engine)
        assert [p.render()[:60] for p in after.problems] == [found[1][:60]]  # only Redis is left
        assert after.warnings[0].startswith("RabbitMQ nodes rabbitmq-2, rabbitmq-3: stopped, and this `up` removes")
        # A node the stack keeps, stopped, is still one of its nodes: dev medium passes as it is.
        assert lines(findings(spec_of("dev", tier="medium"), engine)) == []

