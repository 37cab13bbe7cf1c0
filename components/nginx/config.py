"""nginx.conf for the load balancer in front of the gateway instances: a pure function of the spec."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from model.spec import NginxSpec

HEALTH_PATH = "/nginx-health"
UPSTREAM_NAME = "api_gateway"

# The baseline below uses nothing newer than nginx 1.22 (Debian 12). One feature is gated on the
# version read from the image tag: `server ... resolve` in an upstream, open source since 1.27.3.
RESOLVE_SINCE = (1, 27, 3)

# Passive health: a gateway that fails this often within the window sits out for the window.
MAX_FAILS = 3
FAIL_TIMEOUT_S = 10
NEXT_UPSTREAM_TRIES = 3
# Node's http.Server closes idle keep-alive sockets after 5 s; nginx must drop an idle upstream
# connection first, or a request written into a socket the gateway is closing fails, and a POST
# that failed after being sent is not retried (see proxy_next_upstream below).
UPSTREAM_IDLE_TIMEOUT_S = 4
UPSTREAM_KEEPALIVE_REQUESTS = 1000
# proxy_read_timeout takes no variables, so upgraded (WebSocket) connections get their own location
# with a long idle limit; a plain request still times out after spec.read_timeout_s.
WEBSOCKET_TIMEOUT_S = 3600
# Lets in-flight requests finish on a graceful stop (SIGQUIT), but bounds long-lived WebSockets.
SHUTDOWN_TIMEOUT_S = 25
WORKER_CONNECTIONS = 4096
CLIENT_MAX_BODY_SIZE = "10m"
# Docker's embedded DNS answers with a TTL of 600 s: re-resolve far sooner, so a gateway container
# that was replaced (and got a new address) receives traffic again within seconds.
RESOLVER_VALID_S = 10
# Kubernetes: how long a pod that is going away keeps serving (its preStop sleep) after it left its Service's
# endpoints. Nginx finds a gateway pod gone when it next re-resolves the headless Service (RESOLVER_VALID_S),
# and the cluster DNS may still answer from its cache until the record's TTL runs out (CoreDNS's kubernetes
# plugin: 5 s by default). Load balancers and kube-proxy take Nginx's own pods out of rotation in about as long.
CLUSTER_DNS_TTL_S = 5
DRAIN_DELAY_S = RESOLVER_VALID_S + CLUSTER_DNS_TTL_S
# Where an unprivileged nginx (not root: Kubernetes under Pod Security "restricted") keeps its pid file and
# temp files: the official image's compiled-in paths (/var/run/nginx.pid, /var/cache/nginx/*_temp) belong
# to root, and its root filesystem is read-only there. The same paths nginxinc/nginx-unprivileged uses.
UNPRIVILEGED_RUN_DIR = "/tmp"
TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")

# The access log line (log_format banyan), in its quoted parts; components/monitoring parses it (mtail).
LOG_FORMAT = (
    "'$remote_addr [$time_local] \"$request\" $status $body_bytes_sent '",
    "'rt=$request_time ua=\"$upstream_addr\" us=\"$upstream_status\" '",
    "'urt=\"$upstream_response_time\" rid=$http_x_request_id'",
)

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")
_VERSION = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?")


def image_version(image: str) -> tuple[int, int, int] | None:
    """The nginx version an image tag names (`nginx:1.27.3-alpine` -> (1, 27, 3)); None when the tag names none."""
    ref = image.split("@", 1)[0]
    name, _, tag = ref.rpartition(":")
    if not name or "/" in tag:
        return None
    match = _VERSION.match(tag)
    if match is None:
        return None
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)


def supports_resolve(spec: NginxSpec) -> bool:
    version = image_version(spec.image)
    return version is not None and version >= RESOLVE_SINCE


def worker_processes(spec: NginxSpec) -> int:
    return max(1, math.ceil(spec.resources.limits.cpu_millis / 1000))


def _check(upstreams: Sequence[str], upstream_port: int) -> None:
    if not upstreams:
        raise ValueError("nginx needs at least one upstream host")
    bad = [h for h in upstreams if not _HOST.match(h)]
    if bad:
        raise ValueError(f"not a host name or IPv4 address: {bad!r}")
    duplicates = sorted({h for h in upstreams if list(upstreams).count(h) > 1})
    if duplicates:
        raise ValueError(f"upstream hosts listed twice: {duplicates!r}")
    if not 1 <= upstream_port <= 65535:
        raise ValueError(f"upstream port out of range: {upstream_port}")


def render_nginx_conf(
    spec: NginxSpec,
    upstreams: Sequence[str],
    upstream_port: int,
    *,
    resolver: str | None = None,
    peers: int | None = None,
    unprivileged: bool = False,
    metrics_log: str | None = None,
) -> str:
    """A complete nginx.conf balancing over exactly `upstreams` (in the given order) on `upstream_port`.

    `resolver` is the DNS server that knows the upstream names (Docker's embedded 127.0.0.11). With it,
    and an image of nginx >= 1.27.3, nginx re-resolves the names while running: it starts before every
    gateway exists and follows a gateway container that comes back with a new address. Without it
    (or on an older nginx) names resolve once at start, so every upstream must resolve by then.

    `unprivileged` is for a master process that is not root: the pid file and every temp path move to
    UNPRIVILEGED_RUN_DIR (which must be writable), and `spec.listen_port` must be one it may bind (>= 1024).

    `metrics_log` is a second access_log destination in the same format (the monitoring part's syslog target).
    """
    _check(upstreams, upstream_port)
    if unprivileged and spec.listen_port < 1024:
        raise ValueError(f"an unprivileged nginx cannot bind port {spec.listen_port} (below 1024)")
    run_lines = [f"pid {UNPRIVILEGED_RUN_DIR}/nginx.pid;"] if unprivileged else []
    temp_lines = (
        [f"    {kind}_temp_path {UNPRIVILEGED_RUN_DIR}/{kind}_temp;" for kind in TEMP_PATHS] + [""]
        if unprivileged
        else []
    )
    dynamic = resolver is not None and supports_resolve(spec)
    if resolver is not None and not _HOST.match(resolver):
        raise ValueError(f"resolver must be a host name or IPv4 address: {resolver!r}")
    # One name can stand for many peers (a headless Service resolved at run time): `peers` says how many.
    tries = min(NEXT_UPSTREAM_TRIES, peers or len(upstreams))
    server_params = f"max_fails={MAX_FAILS} fail_timeout={FAIL_TIMEOUT_S}s" + (" resolve" if dynamic else "")
    servers = [f"        server {host}:{upstream_port} {server_params};" for host in upstreams]
    resolver_lines = (
        [
            f"    resolver {resolver} valid={RESOLVER_VALID_S}s ipv6=off;",
            "    resolver_timeout 5s;",
            "",
        ]
        if dynamic
        else []
    )
    lines = [
        "# Rendered by banyan (components/nginx/config.py); edits here are overwritten.",
        # `auto` counts the host's CPUs, not the container's CPU limit: 64 workers under a half-CPU limit
        # would only contend for it (and each costs memory), so one worker per CPU the spec grants.
        f"worker_processes {worker_processes(spec)};",
        f"worker_rlimit_nofile {WORKER_CONNECTIONS * 2};",
        f"worker_shutdown_timeout {SHUTDOWN_TIMEOUT_S}s;",
        # Containers log to their own stdout/stderr; the default paths are files nobody reads.
        "error_log stderr warn;",
        *run_lines,
        "",
        "events {",
        f"    worker_connections {WORKER_CONNECTIONS};",
        "}",
        "",
        "http {",
        "    server_tokens off;",
        "    default_type application/octet-stream;",
        f"    log_format banyan {LOG_FORMAT[0]}",
        *(f"                      {part}" for part in LOG_FORMAT[1:-1]),
        f"                      {LOG_FORMAT[-1]};",
        # The same line, newline-terminated: mtail splits what it receives into lines, and nginx's syslog
        # datagrams end without one.
        *([f"    log_format banyan_metrics {' '.join(LOG_FORMAT)} '\\n';"] if metrics_log else []),
        # Buffered: one write per 64 KiB or per second instead of one per request (measured in benchmarks/:
        # about 10 % of the edge's throughput). A crash can lose up to a second of access log.
        "    access_log /dev/stdout banyan buffer=64k flush=1s;",
        # The monitoring part's copy (mtail, components/monitoring): one datagram per request, never buffered.
        *([f"    access_log {metrics_log} banyan_metrics;"] if metrics_log else []),
        "",
        *temp_lines,
        "    keepalive_timeout 65s;",
        f"    client_max_body_size {CLIENT_MAX_BODY_SIZE};",
        "",
        # An Upgrade request keeps `Connection: upgrade`; every other request sends no Connection
        # header at all, so the upstream connection stays open for the next request (keepalive below).
        "    map $http_upgrade $connection_upgrade {",
        "        default upgrade;",
        "        '' '';",
        "    }",
        "",
        *resolver_lines,
        f"    upstream {UPSTREAM_NAME} {{",
        "        least_conn;",
        # Shared by all workers: least_conn counts and failure marks are then per server, not per worker.
        f"        zone {UPSTREAM_NAME} 256k;",
        *servers,
        f"        keepalive {spec.keepalive_connections};",
        f"        keepalive_requests {UPSTREAM_KEEPALIVE_REQUESTS};",
        f"        keepalive_timeout {UPSTREAM_IDLE_TIMEOUT_S}s;",
        "    }",
        "",
        "    server {",
        f"        listen {spec.listen_port};",
        "        server_name _;",
        "",
        "        proxy_http_version 1.1;",
        # Every proxy_set_header lives here: a location that set even one would inherit none of these.
        "        proxy_set_header Host $host;",
        "        proxy_set_header Upgrade $http_upgrade;",
        "        proxy_set_header Connection $connection_upgrade;",
        # nginx is the edge: the client's own X-Forwarded-For could be forged, so it is replaced, not extended.
        "        proxy_set_header X-Real-IP $remote_addr;",
        "        proxy_set_header X-Forwarded-For $remote_addr;",
        "        proxy_set_header X-Forwarded-Proto $scheme;",
        "        proxy_set_header X-Forwarded-Host $host;",
        # No request id is made here: a client's X-Request-ID passes through untouched and the gateway
        # assigns correlation ids; $request_id would draw 16 random bytes per request (see benchmarks/).
        f"        proxy_connect_timeout {spec.connect_timeout_s}s;",
        f"        proxy_send_timeout {spec.read_timeout_s}s;",
        f"        proxy_read_timeout {spec.read_timeout_s}s;",
        # A failed connect, or a 502/503/504 from one gateway, is retried on another. nginx never
        # retries POST, PATCH or LOCK once the request was sent (we leave out `non_idempotent` on
        # purpose): the first gateway may have acted on it, and a replay could, say, place an order
        # twice. The time bound lets fast failures (refused, reset, connect timeouts) retry but not
        # a request that already waited out proxy_read_timeout: a slow tier is not asked twice.
        "        proxy_next_upstream error timeout http_502 http_503 http_504;",
        f"        proxy_next_upstream_tries {tries};",
        f"        proxy_next_upstream_timeout {spec.connect_timeout_s * NEXT_UPSTREAM_TRIES}s;",
        "",
        f"        location = {HEALTH_PATH} {{",
        # Answers from nginx itself: the container health check must not depend on the gateways.
        "            access_log off;",
        "            default_type text/plain;",
        "            return 200 'ok\\n';",
        "        }",
        "",
        "        location / {",
        # `return` is one of the two directives that are safe inside `if` in a location.
        "            error_page 418 = @upgrade;",
        "            if ($http_upgrade) {",
        "                return 418;",
        "            }",
        f"            proxy_pass http://{UPSTREAM_NAME};",
        "        }",
        "",
        "        location @upgrade {",
        f"            proxy_send_timeout {WEBSOCKET_TIMEOUT_S}s;",
        f"            proxy_read_timeout {WEBSOCKET_TIMEOUT_S}s;",
        f"            proxy_pass http://{UPSTREAM_NAME};",
        "        }",
        "    }",
        "}",
    ]
    return "\n".join(lines) + "\n"
