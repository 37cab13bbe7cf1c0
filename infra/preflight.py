"""The program's preflight: read what the stack deploys to, apply the pure rules (model/preflight.py for Docker,
model/preflight_kubernetes.py for Kubernetes), and stop the preview (a RunError listing every problem) before
any resource is registered.

Docker: only a local engine is read: the unix socket of `docker:host`, else DOCKER_HOST, else
/var/run/docker.sock. A remote host (ssh://, tcp://), a Docker context, a missing socket or an engine that does
not answer in time skips the check with a warning that says what was not checked; it never fails the preview.

Kubernetes: the cluster the program's provider uses (`banyan:kubernetes.kubeconfig`, else KUBECONFIG, else
~/.kube/config, each a path or the kubeconfig itself, as pulumi-kubernetes reads them; `banyan:kubernetes.context`,
else the current context) is asked, over HTTPS with the kubeconfig's credentials (CA, client certificate, token,
or an exec credential plugin), for the stack's RabbitmqCluster, the operator's StatefulSet, the Redis StatefulSet
and the CloudNativePG Cluster. A kubeconfig it cannot use or a cluster that does not answer skips the check with
a warning, never a traceback.

Under Pulumi's mocks (testkit, the offline plan) nothing is read unless a snapshot is injected.
"""

from __future__ import annotations

import base64
import dataclasses
import http.client
import json
import os
import socket
import ssl
import subprocess
import tempfile
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import settings

from model.errors import ConfigProblem
from model.preflight import EngineSnapshot, check
from model.preflight_kubernetes import KubernetesSnapshot
from model.preflight_kubernetes import check as check_kubernetes
from model.spec import KubernetesSpec, PlatformSpec

DEFAULT_SOCKET = "/var/run/docker.sock"
# Connect and each read; one request, so a preview waits at most a few seconds for a stuck engine.
TIMEOUT_S = 3.0
# An engine's container list is small; anything larger than this is not an answer to trust.
MAX_ANSWER_BYTES = 64 * 1024 * 1024
NOT_CHECKED = ("host ports already published by other containers and RabbitMQ/Redis cluster shrinks were "
               "not checked")


class PreflightError(pulumi.RunError):
    """Every preflight problem at once; a RunError, so the language host prints it without a traceback."""

    def __init__(self, problems: Sequence[ConfigProblem], engine: str = "", *,
                 subject: str = "the Docker engine",
                 footer: str = "for a host whose engine is not the one the provider deploys to") -> None:
        self.problems = tuple(problems)
        count = len(self.problems)
        lines = [f"  - {p.render()}" for p in self.problems]
        header = (f"{subject}{' ' + engine if engine else ''} already holds what this stack would break "
                  f"({count} problem{'s' if count != 1 else ''}); nothing was deployed:")
        super().__init__("\n".join([header, *lines, f"  (banyan:preflight: false turns this check off, {footer})"]))


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
    listed = _get(socket_path, "/containers/json?all=1", timeout_s)
    if not isinstance(listed, list):
        raise ValueError("the engine's container list is not a list")
    info = _get(socket_path, "/info", timeout_s)
    if not isinstance(info, dict):
        raise ValueError("the engine's /info is not an object")
    try:
        snapshot = EngineSnapshot.from_container_list(listed)
    except (AttributeError, KeyError, TypeError) as exc:
        raise ValueError(f"the engine's container list is not in the expected form ({exc!r})") from exc
    cpus, memory = info.get("NCPU"), info.get("MemTotal")
    return dataclasses.replace(snapshot, cpus=cpus if isinstance(cpus, int) and cpus > 0 else None,
                               memory_bytes=memory if isinstance(memory, int) and memory > 0 else None)


def _get(socket_path: str, path: str, timeout_s: float) -> Any:
    """One GET on the engine's socket, its JSON answer (bounded in size)."""
    conn = _UnixConnection(socket_path, timeout_s)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read(MAX_ANSWER_BYTES + 1)
    except (OSError, http.client.HTTPException) as exc:
        raise OSError(f"{type(exc).__name__}: {exc}") from exc
    finally:
        conn.close()
    if response.status != 200:
        raise ValueError(f"the engine answered {response.status} to {path}: {body[:200].decode(errors='replace')}")
    if len(body) > MAX_ANSWER_BYTES:
        raise ValueError(f"the engine's answer to {path} is larger than {MAX_ANSWER_BYTES} bytes")
    return json.loads(body)


_injected: list[EngineSnapshot | KubernetesSnapshot] = []


@contextmanager
def use_snapshot(snapshot: EngineSnapshot | KubernetesSnapshot) -> Iterator[None]:
    """Run the program against `snapshot` instead of an engine or a cluster (tests; under mocks too). A snapshot
    of the other target is ignored."""
    _injected.append(snapshot)
    try:
        yield
    finally:
        _injected.pop()


def _under_mocks() -> bool:
    return isinstance(settings.get_monitor(), pulumi_mocks.MockMonitor)


def run(spec: PlatformSpec, raw_config: Mapping[str, Any]) -> None:
    """The program's preflight: warnings are logged, problems raised as one PreflightError."""
    kubernetes = spec.target == "kubernetes"
    if spec.target == "swarm":
        # The Docker rules read containers and host ports of one engine; a swarm's are services and the routing
        # mesh across nodes, which these rules do not model yet.
        pulumi.log.info("target swarm: no preflight of the swarm yet; the services' convergence checks the deploy")
        return
    if not spec.preflight:
        what = "the Kubernetes cluster's live objects were" if kubernetes else "the Docker engine was"
        pulumi.log.info(f"banyan:preflight is false: {what} not checked")
        return
    wanted = KubernetesSnapshot if kubernetes else EngineSnapshot
    injected = [s for s in _injected if isinstance(s, wanted)]
    if injected:
        snapshot = injected[-1]
        if isinstance(snapshot, KubernetesSnapshot):
            _apply_kubernetes(spec, snapshot, "(an injected snapshot)")
        else:
            _apply(spec, snapshot, "(an injected snapshot)")
    elif not _under_mocks():
        if kubernetes:
            check_cluster(spec, os.environ)
        else:
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
    from model.thresholds import redis_monitor_user

    digests = {i: rabbitmq_docker.node_digest(spec.rabbitmq) for i in spec.rabbitmq.instance_names}
    monitor = redis_monitor_user(spec)
    digests |= {i: redis_docker.node_digest(spec.redis, i, monitor=monitor) for i in spec.redis.instance_names}
    return digests


def _apply(spec: PlatformSpec, snapshot: EngineSnapshot, where: str) -> None:
    findings = check(spec, snapshot, node_digests(spec))
    for warning in findings.warnings:
        pulumi.log.warn(warning)
    if findings.problems:
        raise PreflightError(findings.problems, where)


# ---- Kubernetes ----------------------------------------------------------------------------------------------

# Connect and each read; four small GETs over one connection.
KUBE_TIMEOUT_S = 5.0
# An exec credential plugin (aws eks get-token, gke-gcloud-auth-plugin) answers in a second or two.
EXEC_TIMEOUT_S = 30.0
# One object's JSON; anything larger is not an answer to trust.
MAX_OBJECT_BYTES = 8 * 1024 * 1024
KUBE_NOT_CHECKED = ("RabbitMQ node-count decreases, Redis node-count or mode changes and volume shrinks were not "
                    "checked against the live objects")


class ClusterUnreadableError(Exception):
    """The kubeconfig cannot be used, or the cluster does not answer as an API server: the reason says which."""


@dataclass(frozen=True)
class KubeCredentials:
    """What an HTTPS request to the API server needs, from one kubeconfig context."""

    server: str
    where: str
    ca_pem: str | None = None
    insecure: bool = False
    tls_server_name: str | None = None
    cert_pem: str | None = None
    key_pem: str | None = None
    token: str | None = None
    basic: tuple[str, str] | None = None
    # An exec credential plugin (client.authentication.k8s.io): run once, when the credentials are needed.
    exec_plugin: Mapping[str, Any] | None = field(default=None, repr=False)


def _expand_home(value: str) -> str:
    return os.path.expanduser(value) if value == "~" or value.startswith("~/") else value


def kubeconfig_text(kube: KubernetesSpec, environ: Mapping[str, str]) -> tuple[str, str, Path]:
    """The kubeconfig the program's provider reads, as pulumi-kubernetes does: `banyan:kubernetes.kubeconfig`,
    else KUBECONFIG (the SDK's default for the provider's argument), each a path or the document itself; else
    ~/.kube/config. Returns (document, where it came from, the directory relative paths start in)."""
    if kube.kubeconfig:
        value, origin = kube.kubeconfig, "banyan:kubernetes.kubeconfig"
    elif environ.get("KUBECONFIG"):
        value, origin = environ["KUBECONFIG"], "KUBECONFIG"
    else:
        path = Path(environ.get("HOME") or os.path.expanduser("~")) / ".kube" / "config"
        if not path.is_file():
            raise ClusterUnreadableError(f"no kubeconfig: banyan:kubernetes.kubeconfig and KUBECONFIG are unset and "
                                    f"{path} does not exist")
        value, origin = str(path), str(path)
    expanded = _expand_home(value)
    if os.path.isfile(expanded):
        try:
            return Path(expanded).read_text(), f"{expanded} ({origin})", Path(expanded).resolve().parent
        except (OSError, UnicodeDecodeError) as exc:
            raise ClusterUnreadableError(f"{origin}: {expanded} cannot be read ({exc})") from exc
    if "\n" in value or value.lstrip().startswith("{"):
        return value, f"the kubeconfig in {origin}", Path.cwd()
    listed = " (pulumi-kubernetes reads one file, not a list)" if os.pathsep in value else ""
    raise ClusterUnreadableError(f"{origin} is {value!r}: neither a file nor a kubeconfig document{listed}")


def _named(doc: Mapping[str, Any], section: str, name: str, what: str) -> Mapping[str, Any]:
    """The `what` mapping of the entry called `name` in the list `section` (contexts, clusters, users)."""
    for entry in doc.get(section) or []:
        if isinstance(entry, Mapping) and entry.get("name") == name:
            found = entry.get(what) or {}
            if not isinstance(found, Mapping):
                break
            return found
    raise ClusterUnreadableError(f"the kubeconfig has no {what} {name!r}")


def _file_or_data(section: Mapping[str, Any], key: str, base: Path) -> str | None:
    """A PEM from `<key>-data` (base64) or the file `<key>` (relative to the kubeconfig's directory)."""
    data = section.get(f"{key}-data")
    if data:
        try:
            return base64.b64decode(str(data), validate=True).decode()
        except (ValueError, UnicodeDecodeError) as exc:
            raise ClusterUnreadableError(f"{key}-data is not base64 PEM ({exc})") from exc
    path = section.get(key)
    if not path:
        return None
    full = base / _expand_home(str(path))
    try:
        return full.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ClusterUnreadableError(f"{key} {full} cannot be read ({exc})") from exc


def parse_kubeconfig(text: str, *, context: str | None, origin: str, base: Path) -> KubeCredentials:
    """The server and credentials of `context` (default: the current context) in a kubeconfig document."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ClusterUnreadableError(f"{origin} is not YAML ({str(exc).splitlines()[0]})") from exc
    if not isinstance(doc, Mapping):
        raise ClusterUnreadableError(f"{origin} is not a kubeconfig (not a mapping)")
    name = context or doc.get("current-context")
    if not name:
        raise ClusterUnreadableError(f"{origin} has no current-context and banyan:kubernetes.context is unset")
    try:
        ctx = _named(doc, "contexts", str(name), "context")
        cluster = _named(doc, "clusters", str(ctx.get("cluster")), "cluster")
        user = _named(doc, "users", str(ctx.get("user")), "user") if ctx.get("user") else {}
        server = str(cluster.get("server") or "").rstrip("/")
        if urllib.parse.urlsplit(server).scheme != "https":
            raise ClusterUnreadableError(f"context {name}: server {server or '(none)'} is not https://")
        if user.get("auth-provider"):
            raise ClusterUnreadableError(f"context {name}: the user's auth-provider "
                                    f"({(user['auth-provider'] or {}).get('name')}) is not supported here")
        token = user.get("token")
        if not token and user.get("tokenFile"):
            token_path = base / _expand_home(str(user["tokenFile"]))
            try:
                token = token_path.read_text().strip()
            except OSError as exc:
                raise ClusterUnreadableError(f"tokenFile {token_path} cannot be read ({exc})") from exc
        basic = ((str(user["username"]), str(user.get("password", "")))
                 if user.get("username") and not token else None)
        exec_plugin = user.get("exec")
        if exec_plugin is not None and not isinstance(exec_plugin, Mapping):
            raise ClusterUnreadableError(f"context {name}: the user's exec is not a mapping")
        return KubeCredentials(
            server=server, where=f"{server} (context {name} of {origin})",
            ca_pem=_file_or_data(cluster, "certificate-authority", base),
            insecure=bool(cluster.get("insecure-skip-tls-verify")),
            tls_server_name=str(cluster["tls-server-name"]) if cluster.get("tls-server-name") else None,
            cert_pem=_file_or_data(user, "client-certificate", base),
            key_pem=_file_or_data(user, "client-key", base),
            token=str(token) if token else None, basic=basic, exec_plugin=exec_plugin)
    except (AttributeError, KeyError, TypeError) as exc:
        raise ClusterUnreadableError(f"{origin}: context {name} is not in the kubeconfig form ({exc!r})") from exc


def _run_exec_plugin(creds: KubeCredentials, environ: Mapping[str, str]) -> KubeCredentials:
    """Run the user's exec credential plugin the way client-go does (non-interactive) and take its token or
    client certificate."""
    plugin = creds.exec_plugin or {}
    command = plugin.get("command")
    if not command:
        return creds
    args = [str(a) for a in plugin.get("args") or []]
    env = dict(environ)
    env.update({str(e["name"]): str(e["value"]) for e in plugin.get("env") or [] if isinstance(e, Mapping)})
    api_version = str(plugin.get("apiVersion") or "client.authentication.k8s.io/v1")
    env["KUBERNETES_EXEC_INFO"] = json.dumps({"apiVersion": api_version, "kind": "ExecCredential",
                                              "spec": {"interactive": False}})
    try:
        done = subprocess.run([str(command), *args], env=env, capture_output=True, text=True, check=False,
                              timeout=EXEC_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ClusterUnreadableError(f"the exec credential plugin {command} did not run ({exc})") from exc
    if done.returncode != 0:
        raise ClusterUnreadableError(f"the exec credential plugin {command} failed ({done.returncode}): "
                                f"{done.stderr.strip()[:200]}")
    try:
        status = json.loads(done.stdout).get("status") or {}
    except (ValueError, AttributeError) as exc:
        raise ClusterUnreadableError(f"the exec credential plugin {command} printed no ExecCredential") from exc
    return KubeCredentials(
        server=creds.server, where=creds.where, ca_pem=creds.ca_pem, insecure=creds.insecure,
        tls_server_name=creds.tls_server_name,
        cert_pem=status.get("clientCertificateData") or creds.cert_pem,
        key_pem=status.get("clientKeyData") or creds.key_pem,
        token=status.get("token") or creds.token, basic=creds.basic)


def _tls_context(creds: KubeCredentials) -> ssl.SSLContext:
    if creds.insecure:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context = ssl.create_default_context(cadata=creds.ca_pem) if creds.ca_pem else ssl.create_default_context()
    if creds.cert_pem and creds.key_pem:
        # The ssl module loads a certificate chain from files only: written for the load, then removed.
        with tempfile.TemporaryDirectory(prefix="banyan-preflight-") as tmp:
            cert, key = Path(tmp) / "client.crt", Path(tmp) / "client.key"
            for path, pem in ((cert, creds.cert_pem), (key, creds.key_pem)):
                path.touch(mode=0o600)
                path.write_text(pem)
            context.load_cert_chain(str(cert), str(key))
    return context


class _ApiConnection(http.client.HTTPSConnection):
    """HTTPS that may verify the server under another name (the kubeconfig's tls-server-name)."""

    def __init__(self, host: str, port: int, context: ssl.SSLContext, timeout: float,
                 server_name: str | None) -> None:
        super().__init__(host, port, context=context, timeout=timeout)
        self._tls_context = context
        self._server_name = server_name

    def connect(self) -> None:
        if self._server_name is None:
            super().connect()
            return
        http.client.HTTPConnection.connect(self)
        self.sock = self._tls_context.wrap_socket(self.sock, server_hostname=self._server_name)


class ApiReader:
    """GETs of single objects from one API server as the kubeconfig's user."""

    def __init__(self, creds: KubeCredentials, *, timeout_s: float = KUBE_TIMEOUT_S) -> None:
        url = urllib.parse.urlsplit(creds.server)
        if url.hostname is None:
            raise ClusterUnreadableError(f"server {creds.server} has no host")
        try:
            context = _tls_context(creds)
        except (OSError, ValueError) as exc:
            raise ClusterUnreadableError(f"the kubeconfig's certificates cannot be used ({exc})") from exc
        self._prefix = url.path.rstrip("/")
        self._connection = _ApiConnection(url.hostname, url.port or 443, context, timeout_s, creds.tls_server_name)
        self._headers = {"Accept": "application/json"}
        if creds.token:
            self._headers["Authorization"] = f"Bearer {creds.token}"
        elif creds.basic:
            pair = base64.b64encode(f"{creds.basic[0]}:{creds.basic[1]}".encode()).decode()
            self._headers["Authorization"] = f"Basic {pair}"

    def close(self) -> None:
        self._connection.close()

    def get(self, path: str) -> dict[str, Any] | None:
        """The object at `path`, or None when the server has none (404: absent, or its kind not installed)."""
        try:
            self._connection.request("GET", self._prefix + path, headers=self._headers)
            response = self._connection.getresponse()
            body = response.read(MAX_OBJECT_BYTES + 1)
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise ClusterUnreadableError(f"{type(exc).__name__}: {exc}") from exc
        if response.status == 404:
            return None
        if response.status != 200:
            raise ClusterUnreadableError(f"GET {path} answered {response.status}: {_status_message(body)}")
        if len(body) > MAX_OBJECT_BYTES:
            raise ClusterUnreadableError(f"GET {path}: the answer is larger than {MAX_OBJECT_BYTES} bytes")
        try:
            found = json.loads(body)
        except ValueError as exc:
            raise ClusterUnreadableError(f"GET {path}: the answer is not JSON") from exc
        if not isinstance(found, dict):
            raise ClusterUnreadableError(f"GET {path}: the answer is not an object")
        return found


def _status_message(body: bytes) -> str:
    try:
        return str(json.loads(body).get("message") or body[:200].decode(errors="replace"))
    except (ValueError, AttributeError):
        return body[:200].decode(errors="replace")


def object_paths(spec: PlatformSpec) -> dict[str, str]:
    """The REST paths of the stack's stateful objects, by what they are (names from the components)."""
    from components.postgres import kubernetes as postgres_k8s
    from components.rabbitmq import kubernetes as rabbitmq_k8s
    from components.redis import kubernetes as redis_k8s

    ns = spec.kubernetes.namespace
    return {
        "rabbitmq_cluster": (f"/apis/{rabbitmq_k8s.API_VERSION}/namespaces/{ns}/rabbitmqclusters/"
                             f"{spec.rabbitmq.name}"),
        "rabbitmq_statefulset": f"/apis/apps/v1/namespaces/{ns}/statefulsets/"
                                f"{rabbitmq_k8s.statefulset_name(spec.rabbitmq)}",
        "redis_statefulset": f"/apis/apps/v1/namespaces/{ns}/statefulsets/{redis_k8s.service_name(spec.redis)}",
        "postgres_cluster": (f"/apis/{postgres_k8s.API_VERSION}/namespaces/{ns}/clusters/"
                             f"{postgres_k8s.names(spec.postgres).cluster}"),
    }


def locate_cluster(kube: KubernetesSpec, environ: Mapping[str, str]) -> KubeCredentials:
    """The server and credentials the provider would use. Raises ClusterUnreadableError."""
    text, origin, base = kubeconfig_text(kube, environ)
    creds = parse_kubeconfig(text, context=kube.context, origin=origin, base=base)
    return _run_exec_plugin(creds, environ) if creds.exec_plugin else creds


def read_cluster(spec: PlatformSpec, creds: KubeCredentials, *,
                 timeout_s: float = KUBE_TIMEOUT_S) -> KubernetesSnapshot:
    """The live stateful objects of the stack's namespace. Raises ClusterUnreadableError."""
    reader = ApiReader(creds, timeout_s=timeout_s)
    try:
        found = {what: reader.get(path) for what, path in object_paths(spec).items()}
    finally:
        reader.close()
    try:
        return KubernetesSnapshot.from_objects(spec.kubernetes.namespace, **found)
    except ValueError as exc:
        raise ClusterUnreadableError(str(exc)) from exc


def check_cluster(spec: PlatformSpec, environ: Mapping[str, str]) -> None:
    """Read the cluster the stack deploys to and apply the rules; a skip is a warning, never an error."""
    try:
        creds = locate_cluster(spec.kubernetes, environ)
    except ClusterUnreadableError as exc:
        pulumi.log.warn(f"preflight skipped: {exc}; {KUBE_NOT_CHECKED}")
        return
    try:
        snapshot = read_cluster(spec, creds)
    except ClusterUnreadableError as exc:
        pulumi.log.warn(f"preflight skipped: the Kubernetes cluster at {creds.where} could not be read "
                        f"within {KUBE_TIMEOUT_S:g}s per request ({exc}); {KUBE_NOT_CHECKED}")
        return
    _apply_kubernetes(spec, snapshot, f"at {creds.where}, namespace {spec.kubernetes.namespace},")


def _apply_kubernetes(spec: PlatformSpec, snapshot: KubernetesSnapshot, where: str) -> None:
    findings = check_kubernetes(spec, snapshot)
    for warning in findings.warnings:
        pulumi.log.warn(warning)
    if findings.problems:
        raise PreflightError(findings.problems, where, subject="the Kubernetes cluster",
                             footer="where the kubeconfig read here is not the cluster the provider deploys to")
