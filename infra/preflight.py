"""The program's Docker preflight: read the engine the stack deploys to, apply model/preflight.py's rules,
and stop the preview (a RunError listing every problem) before any resource is registered.

Only a local engine is read: the unix socket of `docker:host`, else DOCKER_HOST, else /var/run/docker.sock.
A remote host (ssh://, tcp://), a Docker context, a missing socket or an engine that does not answer in
time skips the check with a warning that says what was not checked; it never fails the preview. Under
Pulumi's mocks (testkit, the offline plan) no engine is read unless a snapshot is injected.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import settings

from model.errors import ConfigProblem
from model.preflight import EngineSnapshot, check
from model.spec import PlatformSpec

DEFAULT_SOCKET = "/var/run/docker.sock"
# Connect and each read; one request, so a preview waits at most a few seconds for a stuck engine.
TIMEOUT_S = 3.0
# An engine's container list is small; anything larger than this is not an answer to trust.
MAX_ANSWER_BYTES = 64 * 1024 * 1024
NOT_CHECKED = ("host ports already published by other containers and RabbitMQ/Redis cluster shrinks were "
               "not checked")


class PreflightError(pulumi.RunError):
    """Every preflight problem at once; a RunError, so the language host prints it without a traceback."""

    def __init__(self, problems: Sequence[ConfigProblem], engine: str = "") -> None:
        self.problems = tuple(problems)
        count = len(self.problems)
        lines = [f"  - {p.render()}" for p in self.problems]
        header = (f"the Docker engine{' ' + engine if engine else ''} already holds what this stack would break "
                  f"({count} problem{'s' if count != 1 else ''}); nothing was deployed:")
        footer = ("  (banyan:preflight: false turns this check off, for a host whose engine is not the one "
                  "the provider deploys to)")
        super().__init__("\n".join([header, *lines, footer]))


@dataclass(frozen=True)
class Engine:
    """Where the engine is: a unix socket, or None with the reason it is not read."""

    address: str
    socket_path: str | None
    skip_reason: str | None = None


def locate(raw_config: Mapping[str, Any], environ: Mapping[str, str]) -> Engine:
    """The engine the provider deploys to, as the provider picks it: a context first, then the host."""
    context = raw_config.get("docker:context") or environ.get("DOCKER_CONTEXT")
    if context and context != "default":
        return Engine(f"context {context}", None, f"the stack deploys through Docker context {context!r}")
    if raw_config.get("docker:host"):
        host, origin = str(raw_config["docker:host"]), "docker:host"
    elif environ.get("DOCKER_HOST"):
        host, origin = environ["DOCKER_HOST"], "DOCKER_HOST"
    else:
        host, origin = f"unix://{DEFAULT_SOCKET}", "the default"
    parsed = urllib.parse.urlsplit(host)
    if parsed.scheme != "unix":
        return Engine(host, None, f"{origin} is {host}, not a local unix socket")
    path = parsed.path or DEFAULT_SOCKET
    if not os.path.exists(path):
        return Engine(host, None, f"no Docker socket at {path} ({origin})")
    return Engine(host, path)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def read_engine(socket_path: str, *, timeout_s: float = TIMEOUT_S) -> EngineSnapshot:
    """Every container on the engine behind `socket_path` (`GET /containers/json?all=1`, unversioned: any
    engine answers it). Raises OSError or ValueError when the engine cannot be read."""
    conn = _UnixConnection(socket_path, timeout_s)
    try:
        conn.request("GET", "/containers/json?all=1")
        response = conn.getresponse()
        body = response.read(MAX_ANSWER_BYTES + 1)
    except (OSError, http.client.HTTPException) as exc:
        raise OSError(f"{type(exc).__name__}: {exc}") from exc
    finally:
        conn.close()
    if response.status != 200:
        raise ValueError(f"the engine answered {response.status}: {body[:200].decode(errors='replace')}")
    if len(body) > MAX_ANSWER_BYTES:
        raise ValueError(f"the engine's container list is larger than {MAX_ANSWER_BYTES} bytes")
    listed = json.loads(body)
    if not isinstance(listed, list):
        raise ValueError("the engine's container list is not a list")
    try:
        return EngineSnapshot.from_container_list(listed)
    except (AttributeError, KeyError, TypeError) as exc:
        raise ValueError(f"the engine's container list is not in the expected form ({exc!r})") from exc


_injected: list[EngineSnapshot] = []


@contextmanager
def use_snapshot(snapshot: EngineSnapshot) -> Iterator[None]:
    """Run the program against `snapshot` instead of an engine (tests; under mocks too)."""
    _injected.append(snapshot)
    try:
        yield
    finally:
        _injected.pop()


def _under_mocks() -> bool:
    return isinstance(settings.get_monitor(), pulumi_mocks.MockMonitor)


def run(spec: PlatformSpec, raw_config: Mapping[str, Any]) -> None:
    """The program's preflight: warnings are logged, problems raised as one PreflightError."""
    if spec.target != "docker":
        return
    if not spec.preflight:
        pulumi.log.info("banyan:preflight is false: the Docker engine was not checked")
        return
    if _injected:
        _apply(spec, _injected[-1], "(an injected snapshot)")
    elif not _under_mocks():
        check_engine(spec, raw_config, os.environ)


def check_engine(spec: PlatformSpec, raw_config: Mapping[str, Any], environ: Mapping[str, str]) -> None:
    """Read the engine the stack deploys to and apply the rules; a skip is a warning, never an error."""
    engine = locate(raw_config, environ)
    if engine.socket_path is None:
        pulumi.log.warn(f"preflight skipped: {engine.skip_reason}; {NOT_CHECKED}")
        return
    try:
        snapshot = read_engine(engine.socket_path)
    except (OSError, ValueError) as exc:
        pulumi.log.warn(f"preflight skipped: the Docker engine at {engine.address} could not be read "
                        f"within {TIMEOUT_S:g}s ({exc}); {NOT_CHECKED}")
        return
    _apply(spec, snapshot, f"at {engine.address}")


def node_digests(spec: PlatformSpec) -> dict[str, str]:
    """The config label each RabbitMQ and Redis node of `spec` will carry, by instance (from the parts'
    own renderers, so the preview compares what `up` would ship)."""
    from components.rabbitmq import docker as rabbitmq_docker
    from components.redis import docker as redis_docker

    digests = {i: rabbitmq_docker.node_digest(spec.rabbitmq) for i in spec.rabbitmq.instance_names}
    digests |= {i: redis_docker.node_digest(spec.redis, i) for i in spec.redis.instance_names}
    return digests


def _apply(spec: PlatformSpec, snapshot: EngineSnapshot, where: str) -> None:
    findings = check(spec, snapshot, node_digests(spec))
    for warning in findings.warnings:
        pulumi.log.warn(warning)
    if findings.problems:
        raise PreflightError(findings.problems, where)
