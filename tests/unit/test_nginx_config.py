"""The rendered nginx.conf balances over exactly the gateways, keeps upstream connections alive, and parses."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from components.nginx.config import (
    HEALTH_PATH,
    RESOLVE_SINCE,
    TEMP_PATHS,
    UNPRIVILEGED_RUN_DIR,
    UPSTREAM_NAME,
    image_version,
    render_nginx_conf,
    worker_processes,
)
from model.spec import NginxSpec
from tests.helpers import spec_for

PORT = 3003


@pytest.fixture(scope="module")
def spec() -> NginxSpec:
    return spec_for().nginx


def with_image(spec: NginxSpec, image: str) -> NginxSpec:
    return spec.model_copy(update={"image": image})


# --- a small nginx.conf reader: enough to assert on blocks instead of grepping lines ---------------


@dataclass
class Block:
    args: list[str]
    directives: list[list[str]] = field(default_factory=list)
    blocks: list[Block] = field(default_factory=list)

    def all(self, name: str) -> list[list[str]]:
        return [d[1:] for d in self.directives if d[0] == name]

    def one(self, name: str) -> list[str]:
        found = self.all(name)
        assert len(found) == 1, f"{name}: {found}"
        return found[0]

    def block(self, *args: str) -> Block:
        found = [b for b in self.blocks if b.args[: len(args)] == list(args)]
        assert len(found) == 1, f"{args}: {[b.args for b in self.blocks]}"
        return found[0]

    def walk(self) -> list[Block]:
        return [self, *(inner for b in self.blocks for inner in b.walk())]


_TOKEN = re.compile(r"""'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)"|([{};])|#[^\n]*|([^\s{};'"#]+)""")


def parse(text: str) -> Block:
    root = Block(["main"])
    stack: list[Block] = [root]
    words: list[str] = []
    for m in _TOKEN.finditer(text):
        single, double, punct, word = m.groups()
        if m.group(0).startswith("#"):
            continue
        if punct == ";":
            stack[-1].directives.append(words)
            words = []
        elif punct == "{":
            block = Block(words)
            stack[-1].blocks.append(block)
            stack.append(block)
            words = []
        elif punct == "}":
            assert not words, f"unterminated directive {words}"
            stack.pop()
        else:
            words.append(next(g for g in (single, double, word) if g is not None))
    assert stack == [root] and not words, "unbalanced braces"
    return root


def upstream_block(conf: Block) -> Block:
    return conf.block("http").block("upstream", UPSTREAM_NAME)


# --- the upstream group ------------------------------------------------------------------------------

hosts = st.lists(st.from_regex(r"\A[a-z][a-z0-9-]{0,20}[a-z0-9]\Z"), min_size=1, max_size=50, unique=True)


@given(upstreams=hosts, port=st.integers(1, 65535))
def test_upstream_lists_exactly_the_given_hosts_in_order(upstreams: list[str], port: int) -> None:
    spec = spec_for().nginx
    block = upstream_block(parse(render_nginx_conf(spec, upstreams, port)))
    assert [s[0] for s in block.all("server")] == [f"{h}:{port}" for h in upstreams]
    assert block.all("least_conn") == [[]]
    assert block.one("keepalive") == [str(spec.keepalive_connections)]


def test_gateway_count_drives_the_upstream(spec: NginxSpec) -> None:
    gateway = spec_for(tier="large").gateway
    block = upstream_block(parse(render_nginx_conf(spec, gateway.instance_names, gateway.port)))
    assert len(block.all("server")) == gateway.instances == 10


def test_servers_carry_passive_health_checks(spec: NginxSpec) -> None:
    block = upstream_block(parse(render_nginx_conf(spec, ["api-gateway-1", "api-gateway-2"], PORT)))
    for server in block.all("server"):
        params = dict(p.split("=", 1) for p in server[1:] if "=" in p)
        assert int(params["max_fails"]) >= 1
        assert params["fail_timeout"].endswith("s")


def test_upstream_keepalive_is_bounded_below_nodes_idle_timeout(spec: NginxSpec) -> None:
    block = upstream_block(parse(render_nginx_conf(spec, ["api-gateway-1"], PORT)))
    assert int(block.one("keepalive_requests")[0]) > 1
    # Node's http.Server drops idle keep-alive sockets after 5 s; nginx must let go first.
    assert int(block.one("keepalive_timeout")[0].removesuffix("s")) < 5
    # least_conn state and failure marks are shared by all workers only with a zone.
    assert block.one("zone")[0] == UPSTREAM_NAME


@pytest.mark.parametrize(
    "bad",
    [[], ["api-gateway-1", "api-gateway-1"], ["gw; include /etc/passwd"], ["-gw"], ["gw 1"], ["gw:3003"]],
)
def test_rejects_upstream_lists_that_would_break_or_inject_config(spec: NginxSpec, bad: list[str]) -> None:
    with pytest.raises(ValueError, match=r"upstream|host"):
        render_nginx_conf(spec, bad, PORT)


def test_rejects_a_port_out_of_range(spec: NginxSpec) -> None:
    with pytest.raises(ValueError, match="port"):
        render_nginx_conf(spec, ["gw"], 0)


# --- proxying ----------------------------------------------------------------------------------------


def server_block(text: str) -> Block:
    return parse(text).block("http").block("server")


def test_plain_requests_send_no_connection_upgrade(spec: NginxSpec) -> None:
    text = render_nginx_conf(spec, ["api-gateway-1"], PORT)
    conf = parse(text)
    # The guide's `proxy_set_header Connection 'upgrade'` on every request defeats upstream keep-alive.
    every_header = [d for b in conf.walk() for d in b.all("proxy_set_header")]
    connection = [value for name, value in every_header if name.lower() == "connection"]
    assert connection == ["$connection_upgrade"]
    mapping = conf.block("http").block("map", "$http_upgrade", "$connection_upgrade")
    assert ["", ""] in mapping.directives, "no Upgrade header must map to an empty (dropped) Connection header"
    assert ["default", "upgrade"] in mapping.directives
    assert not re.search(r"Connection\s+['\"]?upgrade", text, re.IGNORECASE)


def test_headers_are_set_once_where_every_proxied_location_inherits_them(spec: NginxSpec) -> None:
    server = server_block(render_nginx_conf(spec, ["api-gateway-1"], PORT))
    # nginx inherits proxy_set_header only into a level that sets none itself.
    assert all(not inner.all("proxy_set_header") for b in server.blocks for inner in b.walk())
    names = {name.lower(): value for name, value in server.all("proxy_set_header")}
    assert names["host"] == "$host"
    assert names["upgrade"] == "$http_upgrade"
    assert names["x-forwarded-for"] == "$remote_addr"
    assert names["x-forwarded-proto"] == "$scheme"
    assert server.one("proxy_http_version") == ["1.1"]


def test_failed_requests_move_to_the_next_gateway_within_bounds(spec: NginxSpec) -> None:
    upstreams = ["api-gateway-1", "api-gateway-2", "api-gateway-3", "api-gateway-4"]
    server = server_block(render_nginx_conf(spec, upstreams, PORT))
    conditions = server.one("proxy_next_upstream")
    assert {"error", "timeout", "http_502", "http_503", "http_504"} <= set(conditions)
    # POST/PATCH already sent to one gateway are never replayed on another.
    assert "non_idempotent" not in conditions
    tries = int(server.one("proxy_next_upstream_tries")[0])
    assert 1 < tries <= len(upstreams)
    bound = int(server.one("proxy_next_upstream_timeout")[0].removesuffix("s"))
    assert spec.connect_timeout_s <= bound < spec.read_timeout_s


def test_a_single_gateway_is_tried_once(spec: NginxSpec) -> None:
    server = server_block(render_nginx_conf(spec, ["api-gateway-1"], PORT))
    assert server.one("proxy_next_upstream_tries") == ["1"]


def test_timeouts_come_from_the_spec_and_upgrades_get_a_long_one(spec: NginxSpec) -> None:
    custom = spec.model_copy(update={"connect_timeout_s": 7, "read_timeout_s": 45})
    server = server_block(render_nginx_conf(custom, ["api-gateway-1"], PORT))
    assert server.one("proxy_connect_timeout") == ["7s"]
    assert server.one("proxy_read_timeout") == ["45s"]
    assert server.one("proxy_send_timeout") == ["45s"]
    root = server.block("location", "/")
    assert root.one("error_page") == ["418", "=", "@upgrade"]
    assert root.block("if", "($http_upgrade)").one("return") == ["418"]
    upgrade = server.block("location", "@upgrade")
    assert int(upgrade.one("proxy_read_timeout")[0].removesuffix("s")) >= 3600
    assert root.one("proxy_pass") == upgrade.one("proxy_pass") == [f"http://{UPSTREAM_NAME}"]


def test_health_endpoint_answers_without_the_gateways(spec: NginxSpec) -> None:
    server = server_block(render_nginx_conf(spec, ["api-gateway-1"], PORT))
    health = server.block("location", "=", HEALTH_PATH)
    assert health.one("return")[0] == "200"
    assert not health.all("proxy_pass")


def test_listener_and_edge_settings(spec: NginxSpec) -> None:
    conf = parse(render_nginx_conf(spec.model_copy(update={"listen_port": 8081}), ["api-gateway-1"], PORT))
    http = conf.block("http")
    assert http.block("server").one("listen") == ["8081"]
    assert http.one("server_tokens") == ["off"]
    assert http.one("client_max_body_size") == ["10m"]
    assert conf.one("error_log")[0] == "stderr"
    assert http.one("access_log")[0] == "/dev/stdout"
    assert {"buffer=64k", "flush=1s"} <= set(http.one("access_log"))
    # The image's compiled-in pid path applies; a test passes its own with -g, which a pid here would refuse.
    assert not conf.all("pid")


def test_unprivileged_keeps_pid_and_temp_files_in_the_run_dir(spec: NginxSpec) -> None:
    """Kubernetes runs nginx as non-root on a read-only root: nothing may land in the image's root-owned paths.
    The default (Docker, master as root) renders neither, so the image's compiled-in paths apply there."""
    unprivileged = spec.model_copy(update={"listen_port": 8080})
    conf = parse(render_nginx_conf(unprivileged, ["api-gateway-1"], PORT, unprivileged=True))
    assert conf.one("pid") == [f"{UNPRIVILEGED_RUN_DIR}/nginx.pid"]
    http = conf.block("http")
    for kind in TEMP_PATHS:
        assert http.one(f"{kind}_temp_path") == [f"{UNPRIVILEGED_RUN_DIR}/{kind}_temp"]
    assert http.block("server").one("listen") == ["8080"]
    plain = parse(render_nginx_conf(unprivileged, ["api-gateway-1"], PORT))
    assert not plain.all("pid") and not any(plain.block("http").all(f"{k}_temp_path") for k in TEMP_PATHS)


def test_unprivileged_refuses_a_privileged_port(spec: NginxSpec) -> None:
    with pytest.raises(ValueError, match="cannot bind port 80"):
        render_nginx_conf(spec.model_copy(update={"listen_port": 80}), ["api-gateway-1"], PORT, unprivileged=True)


@pytest.mark.parametrize(("cpu_millis", "workers"), [(100, 1), (500, 1), (1000, 1), (1500, 2), (2000, 2)])
def test_workers_follow_the_cpu_limit(spec: NginxSpec, cpu_millis: int, workers: int) -> None:
    limits = spec.resources.limits.model_copy(update={"cpu_millis": cpu_millis})
    sized = spec.model_copy(update={"resources": spec.resources.model_copy(update={"limits": limits})})
    assert worker_processes(sized) == workers
    assert parse(render_nginx_conf(sized, ["gw"], PORT)).one("worker_processes") == [str(workers)]


def test_rendering_is_deterministic(spec: NginxSpec) -> None:
    args = (spec, ["api-gateway-2", "api-gateway-1"], PORT)
    assert render_nginx_conf(*args, resolver="127.0.0.11") == render_nginx_conf(*args, resolver="127.0.0.11")


# --- version gating ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "version"),
    [
        ("nginx:1.27.3-alpine", (1, 27, 3)),
        ("nginx:1.22.1", (1, 22, 1)),
        ("nginx:1.27-alpine", (1, 27, 0)),
        ("registry.local:5000/nginx:1.28.0@sha256:" + "0" * 64, (1, 28, 0)),
        ("nginx:stable-alpine", None),
        ("registry.local:5000/nginx", None),
    ],
)
def test_image_version(image: str, version: tuple[int, int, int] | None) -> None:
    assert image_version(image) == version


def test_resolve_only_where_the_image_supports_it(spec: NginxSpec) -> None:
    upstreams = ["api-gateway-1", "api-gateway-2"]
    new = parse(render_nginx_conf(with_image(spec, "nginx:1.27.3-alpine"), upstreams, PORT, resolver="127.0.0.11"))
    assert all(s[-1] == "resolve" for s in upstream_block(new).all("server"))
    assert new.block("http").one("resolver")[0] == "127.0.0.11"
    for old in (
        render_nginx_conf(with_image(spec, "nginx:1.22.1-alpine"), upstreams, PORT, resolver="127.0.0.11"),
        render_nginx_conf(with_image(spec, "nginx:1.27.3-alpine"), upstreams, PORT),
    ):
        assert "resolve" not in old


# --- nginx -t on the exact rendered bytes ------------------------------------------------------------


def nginx_binary() -> str:
    found = shutil.which("nginx")
    if found is None:
        pytest.skip("no nginx binary on PATH (Debian: apt-get install nginx-light; /usr/sbin must be on PATH)")
    return found


def nginx_version(binary: str) -> tuple[int, int, int]:
    out = subprocess.run([binary, "-v"], capture_output=True, text=True, check=True, timeout=30)
    match = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", out.stderr + out.stdout)
    assert match, out.stderr
    major, minor, patch = (int(g) for g in match.groups())
    return major, minor, patch


def nginx_test(binary: str, text: str, tmp_path: Path) -> None:
    """`nginx -t` on the file as rendered. Only the pid path moves (via -g) into the temp prefix.

    Debian's binary has compiled-in temp dirs (/var/lib/nginx/body ...) that only root may create;
    as another user `-t` parses the whole file ("syntax is ok") and then fails on those alone.
    """
    conf = tmp_path / "nginx.conf"
    conf.write_text(text)
    cmd = [binary, "-t", "-p", f"{tmp_path}/", "-c", str(conf), "-e", "stderr", "-g", f"pid {tmp_path}/nginx.pid;"]
    result = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=60)
    assert "syntax is ok" in result.stderr, result.stderr
    if result.returncode == 0:
        return
    errors = [line for line in result.stderr.splitlines() if "[emerg]" in line]
    foreign = [e for e in errors if "Permission denied" not in e or str(tmp_path) in e]
    assert os.geteuid() != 0 and errors and not foreign, result.stderr


def test_nginx_accepts_the_rendered_file(spec: NginxSpec, tmp_path: Path) -> None:
    # The real names (api-gateway-1 ...) only resolve on the platform network, and nginx < 1.27.3 resolves
    # every upstream name while loading; loopback addresses take their place (127/8 is all loopback on
    # Linux), and `localhost` keeps one name in the test. The lines are the same template either way.
    binary = nginx_binary()
    nginx_test(binary, render_nginx_conf(spec, ["127.0.0.1", "127.0.0.2", "localhost"], PORT), tmp_path)


def test_nginx_accepts_the_dynamic_variant_where_it_exists(spec: NginxSpec, tmp_path: Path) -> None:
    binary = nginx_binary()
    version = nginx_version(binary)
    if version < RESOLVE_SINCE:
        pytest.skip(f"nginx {version} on PATH predates `server ... resolve` (open source since {RESOLVE_SINCE})")
    image = "nginx:{}.{}.{}".format(*version)
    text = render_nginx_conf(with_image(spec, image), ["api-gateway-1", "api-gateway-2"], PORT, resolver="127.0.0.1")
    assert "resolve;" in text
    nginx_test(binary, text, tmp_path)


def test_nginx_runs_the_unprivileged_file_as_non_root_without_capabilities(spec: NginxSpec, tmp_path: Path) -> None:
    """The Kubernetes variant, as the pod runs it: uid 101 (not root), every capability dropped, and only
    UNPRIVILEGED_RUN_DIR writable (a fresh tmpfs there, as the pod's emptyDir). `nginx -t` loads the exact
    bytes, opens the logs and creates every temp path; any write to a root-owned path fails it."""
    binary = nginx_binary()
    tools = [shutil.which(t) for t in ("unshare", "setpriv")]
    if os.geteuid() != 0 or None in tools:
        pytest.skip("needs root, unshare and setpriv (util-linux) to run nginx as another user in a mount namespace")
    text = render_nginx_conf(spec.model_copy(update={"listen_port": 8080}), ["127.0.0.1", "localhost"], PORT,
                             unprivileged=True)
    conf = tmp_path / "nginx.conf"
    conf.write_text(text)
    conf.chmod(0o644)
    # The file is handed over as an open descriptor: the tmpfs hides tmp_path (under /tmp) from nginx. stdout is
    # a file of nginx's user, as runc makes a container's stdio its user's (access_log reopens /dev/stdout).
    run = UNPRIVILEGED_RUN_DIR
    with conf.open() as fd:
        script = (f"mount -t tmpfs -o mode=1777 tmpfs {run} && touch {run}/stdout && chown 101:101 {run}/stdout && "
                  f"exec setpriv --reuid=101 --regid=101 --clear-groups --inh-caps=-all --bounding-set=-all "
                  f"{binary} -t -c /proc/self/fd/{fd.fileno()} -e stderr >{run}/stdout")
        result = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                                pass_fds=(fd.fileno(),), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                timeout=60, check=False)
    assert result.returncode == 0 and "test is successful" in result.stderr, result.stderr
