"""A real kube-apiserver for tests: started and stopped through scripts/kube-apiserver, spoken to over
HTTPS with the standard library only (server-side apply, dry-run, create, get, delete, discovery)."""

from __future__ import annotations

import base64
import functools
import http.client
import json
import os
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[3]
SCRIPT = REPO_ROOT / "scripts" / "kube-apiserver"
# Set to 1 (CI does) to make a missing API server a failure instead of a skip.
REQUIRE_ENV = "BANYAN_REQUIRE_APISERVER"
NOT_BUILT_EXIT = 3


class ApiServerUnavailableError(Exception):
    """The binaries are not built (or the server could not start): the reason says which and what to run."""


class ServerRejectedError(Exception):
    """The API server refused an object; str() is `Kind/name: the server's message`."""

    def __init__(self, rejection: Rejection) -> None:
        super().__init__(str(rejection))
        self.rejection = rejection


def required() -> bool:
    return os.environ.get(REQUIRE_ENV) == "1"


def status() -> dict[str, str]:
    """What `scripts/kube-apiserver status` says: kubernetes, etcd, binaries, built (yes/no)."""
    out = subprocess.run([str(SCRIPT), "status"], check=True, capture_output=True, text=True).stdout
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


# ---- kubeconfig ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Kubeconfig:
    """The current context's server and client-certificate credentials (files)."""

    path: Path
    server: str
    ca_file: Path
    cert_file: Path
    key_file: Path

    @classmethod
    def load(cls, path: Path) -> Kubeconfig:
        doc: dict[str, Any] = yaml.safe_load(path.read_text())
        current = doc["current-context"]
        context = next(c["context"] for c in doc["contexts"] if c["name"] == current)
        cluster = next(c["cluster"] for c in doc["clusters"] if c["name"] == context["cluster"])
        user = next(u["user"] for u in doc["users"] if u["name"] == context["user"])
        base = path.parent

        def file_of(section: Mapping[str, Any], key: str, suffix: str) -> Path:
            if key in section:
                return (base / str(section[key])).resolve()
            data = section.get(f"{key}-data")
            if data is None:
                raise ValueError(f"{path}: neither {key} nor {key}-data in the current context")
            # Embedded credentials: written beside the kubeconfig, readable by the owner only.
            target = base / f".{path.name}.{suffix}"
            target.write_bytes(base64.b64decode(data))
            target.chmod(0o600)
            return target

        return cls(path=path, server=str(cluster["server"]).rstrip("/"),
                   ca_file=file_of(cluster, "certificate-authority", "ca.crt"),
                   cert_file=file_of(user, "client-certificate", "client.crt"),
                   key_file=file_of(user, "client-key", "client.key"))


# ---- HTTP client ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Response:
    status: int
    body: dict[str, Any]
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def message(self) -> str:
        return str(self.body.get("message", "")) if not self.ok else ""


@dataclass(frozen=True)
class Rejection:
    """One refusal by the server: which object, the HTTP status, the Status reason and message."""

    kind: str
    name: str
    status: int
    reason: str
    message: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}: {self.message}"


@dataclass(frozen=True)
class ResourceInfo:
    plural: str
    namespaced: bool


def _parse_warning(header: str) -> str:
    # RFC 7234 form the server uses: `299 - "text"`.
    parts = header.split(" ", 2)
    text = parts[2] if len(parts) == 3 else header
    return text[1:-1].replace('\\"', '"') if text.startswith('"') and text.endswith('"') else text


class Client:
    """Requests to one API server as the kubeconfig's user; one kept-alive TLS connection."""

    def __init__(self, kubeconfig: Kubeconfig, *, timeout_s: float = 60.0) -> None:
        self.kubeconfig = kubeconfig
        url = urllib.parse.urlsplit(kubeconfig.server)
        if url.scheme != "https" or url.hostname is None:
            raise ValueError(f"expected an https:// server, got {kubeconfig.server}")
        self._host, self._port = url.hostname, url.port or 443
        self._context = ssl.create_default_context(cafile=str(kubeconfig.ca_file))
        self._context.load_cert_chain(str(kubeconfig.cert_file), str(kubeconfig.key_file))
        self._timeout_s = timeout_s
        self._connection: http.client.HTTPSConnection | None = None
        self._discovery: dict[str, dict[str, ResourceInfo]] = {}

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def request(self, method: str, path: str, *, query: Mapping[str, str] | None = None,
                body: Any = None, content_type: str = "application/json") -> Response:
        target = path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        payload = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if payload is not None:
            headers["Content-Type"] = content_type
        for attempt in (1, 2):
            if self._connection is None:
                self._connection = http.client.HTTPSConnection(
                    self._host, self._port, context=self._context, timeout=self._timeout_s)
            try:
                self._connection.request(method, target, body=payload, headers=headers)
                raw = self._connection.getresponse()
                data = raw.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # A kept-alive connection the server closed: reconnect once.
                self.close()
                if attempt == 2:
                    raise
                continue
            decoded = json.loads(data) if data else {}
            warnings = tuple(_parse_warning(w) for w in raw.headers.get_all("Warning") or [])
            return Response(raw.status, decoded if isinstance(decoded, dict) else {"items": decoded}, warnings)
        raise AssertionError("unreachable")

    # -- discovery --

    def resource(self, api_version: str, kind: str, *, wait_s: float = 30.0) -> ResourceInfo:
        """The REST name of a kind; waits (bounded) for a just-installed CRD to show in discovery."""
        deadline = time.monotonic() + wait_s
        while True:
            known = self._discovery.get(api_version)
            if known is not None and kind in known:
                return known[kind]
            path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
            response = self.request("GET", path)
            if response.ok:
                self._discovery[api_version] = {
                    r["kind"]: ResourceInfo(r["name"], bool(r["namespaced"]))
                    for r in response.body.get("resources", []) if "/" not in r["name"]}
                if kind in self._discovery[api_version]:
                    return self._discovery[api_version][kind]
            if time.monotonic() >= deadline:
                raise LookupError(f"the server serves no {kind} in {api_version} (after {wait_s:.0f}s)")
            time.sleep(0.2)

    def collection_path(self, obj: Mapping[str, Any]) -> str:
        api_version, kind = obj["apiVersion"], obj["kind"]
        info = self.resource(api_version, kind)
        prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        if info.namespaced:
            namespace = obj["metadata"].get("namespace") or "default"
            return f"{prefix}/namespaces/{namespace}/{info.plural}"
        return f"{prefix}/{info.plural}"

    def object_path(self, obj: Mapping[str, Any]) -> str:
        return f"{self.collection_path(obj)}/{obj['metadata']['name']}"

    # -- verbs --

    def apply(self, obj: Mapping[str, Any], *, field_manager: str, dry_run: bool, force: bool = True) -> Response:
        """Server-side apply (created if absent); dry_run=True: dryRun=All, nothing is stored.

        fieldValidation=Strict: an unknown or duplicated field is an error, not a dropped value.
        """
        query = {"fieldManager": field_manager, "fieldValidation": "Strict"}
        if force:
            query["force"] = "true"
        if dry_run:
            query["dryRun"] = "All"
        return self.request("PATCH", self.object_path(obj), query=query, body=obj,
                            content_type="application/apply-patch+yaml")

    def create(self, obj: Mapping[str, Any], *, dry_run: bool) -> Response:
        query = {"fieldValidation": "Strict", **({"dryRun": "All"} if dry_run else {})}
        return self.request("POST", self.collection_path(obj), query=query, body=obj)

    def get(self, obj: Mapping[str, Any]) -> Response:
        return self.request("GET", self.object_path(obj))

    def delete(self, obj: Mapping[str, Any], *, dry_run: bool = False) -> Response:
        """Delete in the background: no finalizer waits for a garbage collector (none runs here)."""
        query = {"propagationPolicy": "Background", **({"dryRun": "All"} if dry_run else {})}
        return self.request("DELETE", self.object_path(obj), query=query)

    def wait_until(self, what: str, check: Callable[[], bool], *, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not check():
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{what}: not after {timeout_s:.0f}s")
            time.sleep(0.2)

    # -- helpers for suites --

    def install_crds(self, paths: Iterable[Path], *, field_manager: str) -> list[str]:
        """Apply every CustomResourceDefinition in the files and wait until each is Established."""
        names: list[str] = []
        for path in paths:
            for doc in yaml.safe_load_all(path.read_text()):
                if not doc or doc.get("kind") != "CustomResourceDefinition":
                    continue
                response = self.apply(doc, field_manager=field_manager, dry_run=False)
                if not response.ok:
                    raise ServerRejectedError(rejection(doc, response))
                names.append(doc["metadata"]["name"])
        for name in names:
            probe = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                     "metadata": {"name": name}}
            self.wait_until(f"CRD {name} Established", functools.partial(self._established, probe))
        return names

    def _established(self, crd: Mapping[str, Any]) -> bool:
        response = self.get(crd)
        # A CRD just created may carry `conditions: null` until the server has judged its names.
        conditions = (response.body.get("status") or {}).get("conditions") or [] if response.ok else []
        return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)

    def gone(self, obj: Mapping[str, Any]) -> bool:
        return self.get(obj).status == 404




# Every refusal a suite saw in this run, as (what was tried, the refusal): conftest.py prints them.
REFUSALS: list[tuple[str, Rejection]] = []
# Warnings the server returned with an accepted request (e.g. Pod Security `warn` on a Deployment).
WARNED: list[tuple[str, str]] = []


def rejection(obj: Mapping[str, Any], response: Response) -> Rejection:
    return Rejection(kind=str(obj.get("kind")), name=str(obj.get("metadata", {}).get("name")),
                     status=response.status, reason=str(response.body.get("reason", "")),
                     message=response.message or json.dumps(response.body))


# ---- the server ----------------------------------------------------------------------------------

@dataclass
class ApiServer:
    """etcd + kube-apiserver on 127.0.0.1, started by scripts/kube-apiserver in their own state dir.

        with ApiServer() as server:
            client = server.client()
            client.apply(obj, field_manager="me", dry_run=True)
    """

    state_dir: Path | None = None
    start_log: str = ""
    _own_dir: bool = field(default=False, repr=False)
    _kubeconfig: Kubeconfig | None = field(default=None, repr=False)
    _clients: list[Client] = field(default_factory=list, repr=False)

    @property
    def kubeconfig(self) -> Kubeconfig:
        if self._kubeconfig is None:
            raise RuntimeError("the API server is not started")
        return self._kubeconfig

    def start(self, *, timeout_s: float = 300.0) -> Kubeconfig:
        if self.state_dir is None:
            self.state_dir = Path(tempfile.mkdtemp(prefix="banyan-kube-"))
            self._own_dir = True
        done = subprocess.run([str(SCRIPT), "start", str(self.state_dir)], capture_output=True, text=True,
                              timeout=timeout_s, check=False, stdin=subprocess.DEVNULL)
        self.start_log = done.stderr
        if done.returncode == NOT_BUILT_EXIT:
            raise ApiServerUnavailableError(
                f"kube-apiserver and etcd are not built ({status().get('binaries')}): run `scripts/kube-apiserver"
                " build` (about 4 minutes on 2 cores, once; later builds reuse the binaries)")
        if done.returncode != 0:
            raise ApiServerUnavailableError(f"scripts/kube-apiserver start failed ({done.returncode}):\n{done.stderr}")
        self._kubeconfig = Kubeconfig.load(Path(done.stdout.strip().splitlines()[-1]))
        return self._kubeconfig

    def client(self) -> Client:
        made = Client(self.kubeconfig)
        self._clients.append(made)
        return made

    def stop(self) -> None:
        for made in self._clients:
            made.close()
        self._clients.clear()
        if self.state_dir is not None:
            subprocess.run([str(SCRIPT), "stop", str(self.state_dir)], capture_output=True, text=True,
                           timeout=60, check=False, stdin=subprocess.DEVNULL)
            if self._own_dir:
                shutil.rmtree(self.state_dir, ignore_errors=True)
        self._kubeconfig = None

    def __enter__(self) -> ApiServer:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
