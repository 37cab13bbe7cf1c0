"""Redis renderers: what each mode and version gets, where the password is (not), and the scripts' behaviour."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from components.redis import config
from model.spec import RedisSpec, Resources, ResourceSpec

SH = shutil.which("sh")
needs_sh = pytest.mark.skipif(SH is None, reason="no POSIX sh on this machine")


def spec(**overrides: Any) -> RedisSpec:
    """The large tier's shape (3 masters x 1 replica) unless overridden."""
    values: dict[str, Any] = {
        "name": "redis", "image": "redis:7.4.2-alpine", "version": "7.4", "nodes": 6, "mode": "cluster",
        "masters": 3, "replicas_per_master": 1, "port": 6379, "bus_port": 16379, "persistence": True,
        "storage_gib": 10, "maxmemory_mib": 1536,
        "resources": ResourceSpec(limits=Resources(cpu_millis=2000, memory_mib=2048),
                                  requests=Resources(cpu_millis=500, memory_mib=2048)),
    }
    values.update(overrides)
    return RedisSpec(**values)


def standalone(**overrides: Any) -> RedisSpec:
    return spec(nodes=1, mode="standalone", masters=1, replicas_per_master=0, **overrides)


def directives(text: str) -> dict[str, str]:
    """Directive -> value, as redis-server reads the file (comments and blank lines skipped)."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.strip().partition(" ")
            assert key not in found, f"{key} set twice"
            found[key] = value
    return found


def test_standalone_has_no_cluster_settings() -> None:
    conf = directives(config.render_redis_conf(standalone()))
    assert not [k for k in conf if k.startswith("cluster-")]
    assert "masterauth" not in config.render_start_script(standalone())
    with pytest.raises(ValueError, match="standalone"):
        config.render_cluster_create_script(standalone())


def test_cluster_node_config() -> None:
    conf = directives(config.render_redis_conf(spec(), "redis-node-2"))
    assert conf["cluster-enabled"] == "yes"
    # Relative to dir: the membership file lives on the data volume.
    assert conf["dir"] == config.DATA_DIR == "/data"
    assert conf["cluster-config-file"] == "nodes.conf"
    assert int(conf["cluster-node-timeout"]) < 15000
    assert conf["cluster-announce-hostname"] == "redis-node-2"
    assert conf["cluster-preferred-endpoint-type"] == "hostname"
    assert "cluster-port" not in conf, "the default bus port (port + 10000) needs no directive"
    assert conf["port"] == "6379"


@pytest.mark.parametrize("make", [spec, standalone])
def test_no_password_in_any_file(make: Any) -> None:
    s = make()
    conf = config.render_redis_conf(s, "redis-node-1")
    assert not {"requirepass", "masterauth"} & directives(conf).keys()
    start = config.render_start_script(s)
    # Only a reference to the environment, and never on a command line (argv is visible in ps).
    assert 'requirepass "$REDIS_PASSWORD"' in start
    assert f'user {config.APP_USER} reset on >"$REDIS_APP_PASSWORD" ' in start
    assert "--requirepass" not in start and "--masterauth" not in start
    if s.mode == "cluster":
        create = config.render_cluster_create_script(s)
        assert " -a " not in create and "--pass" not in create and "--askpass" not in create
        assert "REDISCLI_AUTH" in create
    health = " ".join(config.health_test(s))
    assert " -a " not in health and "PONG" in health, "redis-cli exits 0 on NOAUTH: the reply must be checked"


@given(st.integers(min_value=16, max_value=1 << 20))
def test_maxmemory_follows_the_spec(mib: int) -> None:
    conf = directives(config.render_redis_conf(spec(maxmemory_mib=mib), "redis-node-1"))
    assert conf["maxmemory"] == f"{mib}mb"  # Redis reads "mb" as 1024 * 1024 bytes
    assert conf["maxmemory-policy"] == "allkeys-lfu"


@pytest.mark.parametrize(("persistence", "appendonly"), [(True, "yes"), (False, "no")])
def test_persistence_switches_the_aof(persistence: bool, appendonly: str) -> None:
    conf = directives(config.render_redis_conf(spec(persistence=persistence), "redis-node-1"))
    assert conf["appendonly"] == appendonly
    assert conf["save"] == '""'


@pytest.mark.parametrize("version", ["7.0", "7.4"])
def test_hostname_features_from_7_0(version: str) -> None:
    s = spec(version=version)
    conf = directives(config.render_redis_conf(s, "redis-node-1"))
    assert conf["cluster-announce-hostname"] == "redis-node-1"
    assert conf["bind"] == "* -::*"
    assert "refresh_peer_addresses" in config.render_start_script(s)
    assert "cluster-port 17000" in config.render_redis_conf(spec(version=version, bus_port=17000), "redis-node-1")


def test_6_2_gets_only_what_it_reads() -> None:
    s = spec(version="6.2")
    text = config.render_redis_conf(s)
    conf = directives(text)
    assert not {"cluster-announce-hostname", "cluster-preferred-endpoint-type", "cluster-port"} & conf.keys()
    assert conf["bind"] == "0.0.0.0"
    # Nodes of 6.2 store no host name to resolve again.
    assert "refresh_peer_addresses" not in config.render_start_script(s)
    with pytest.raises(ValueError, match="port \\+ 10000"):
        config.render_redis_conf(spec(version="6.2", bus_port=17000))


@pytest.mark.parametrize("version", ["6.0", "5.0", "seven"])
def test_unsupported_versions_are_refused(version: str) -> None:
    with pytest.raises(ValueError, match="version"):
        config.render_redis_conf(spec(version=version), "redis-node-1")


@pytest.mark.parametrize("hostname", [None, "", "redis node", "-redis", "redis_node"])
def test_a_cluster_node_needs_a_valid_name_to_announce(hostname: str | None) -> None:
    with pytest.raises(ValueError, match="host name"):
        config.render_redis_conf(spec(), hostname)


def test_renders_are_deterministic() -> None:
    assert config.render_redis_conf(spec(), "redis-node-1") == config.render_redis_conf(spec(), "redis-node-1")
    assert config.render_cluster_create_script(spec()) == config.render_cluster_create_script(spec())


@pytest.mark.parametrize(("nodes", "masters", "replicas"), [(3, 3, 0), (6, 3, 1), (8, 4, 1), (9, 3, 2)])
def test_create_script_uses_every_node_and_the_replica_count(nodes: int, masters: int, replicas: int) -> None:
    s = spec(nodes=nodes, masters=masters, replicas_per_master=replicas)
    script = config.render_cluster_create_script(s)
    lines = script.splitlines()
    (node_line,) = [ln for ln in lines if ln.startswith("NODES=")]
    assert node_line == 'NODES="' + " ".join(f"redis-node-{i}:6379" for i in range(1, nodes + 1)) + '"'
    assert f"REPLICAS={replicas}" in lines
    assert f"MASTERS={masters}" in lines
    assert f"COUNT={nodes}" in lines
    assert "SLOTS=16384" in lines
    assert '--cluster-replicas "$REPLICAS"' in script
    assert "--cluster-yes" in script


def test_create_script_endpoints_are_a_parameter() -> None:
    endpoints = [f"127.0.0.1:{7001 + i}" for i in range(6)]
    script = config.render_cluster_create_script(spec(), endpoints, ready_timeout_s=5, settle_timeout_s=7)
    assert f'NODES="{" ".join(endpoints)}"' in script
    assert "READY_TIMEOUT_S=5" in script and "SETTLE_TIMEOUT_S=7" in script
    with pytest.raises(ValueError, match="endpoints"):
        config.render_cluster_create_script(spec(), endpoints[:5])
    with pytest.raises(ValueError, match="host:port"):
        config.render_cluster_create_script(spec(), [*endpoints[:5], "redis-node-6"])


@needs_sh
@pytest.mark.parametrize("make", [spec, standalone, lambda: spec(version="7.0"), lambda: spec(version="6.2")])
def test_scripts_are_valid_sh(make: Any, tmp_path: Path) -> None:
    s = make()
    scripts = {"start.sh": config.render_start_script(s)}
    if s.mode == "cluster":
        scripts["create-cluster.sh"] = config.render_cluster_create_script(s)
    for name, text in scripts.items():
        assert text.startswith("#!/bin/sh\n")
        path = tmp_path / name
        path.write_text(text)
        done = subprocess.run([str(SH), "-n", str(path)], capture_output=True, text=True, check=False)
        assert done.returncode == 0, f"{name}: {done.stderr}"


# ---- the start script, run with stand-ins for redis-server and getent ------------------------------

def _stub(directory: Path, name: str, body: str) -> None:
    path = directory / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


def run_start(tmp_path: Path, s: RedisSpec, password: str, nodes_conf: str | None = None,
              hosts: dict[str, str] | None = None, resolve_timeout_s: int = 30, app_password: str = "app-Pass_2",
              monitor_password: str | None = None) -> tuple[subprocess.CompletedProcess[str], Path]:
    """start.sh with a redis-server that records its argv and stdin, and a getent that knows `hosts`."""
    bin_dir, data = tmp_path / "bin", tmp_path / "data"
    bin_dir.mkdir()
    data.mkdir()
    _stub(bin_dir, "redis-server", f'printf "%s\\n" "$@" > {tmp_path}/argv\ncat > {tmp_path}/stdin\n')
    table = "".join(f'  {name}) echo "{ip}       {name}" ;;\n' for name, ip in (hosts or {}).items())
    _stub(bin_dir, "getent", f'[ "$1" = hosts ] || exit 2\ncase "$2" in\n{table}  *) exit 2 ;;\nesac\n')
    # As root the script gives the data to the redis user and drops to it: recorded, not done, so that the
    # test needs no redis user (and the stubs stay reachable).
    _stub(bin_dir, "chown", f'printf "%s\\n" "$*" >> {tmp_path}/chown\n')
    _stub(bin_dir, "gosu", f'printf "%s\\n" "$1" > {tmp_path}/user\nshift\nexec "$@"\n')
    if nodes_conf is not None:
        (data / "nodes.conf").write_text(nodes_conf)
    script = tmp_path / "start.sh"
    script.write_text(config.render_start_script(s, conf_path="/conf/redis.conf", data_dir=str(data),
                                          resolve_timeout_s=resolve_timeout_s, monitor=monitor_password is not None))
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "REDIS_PASSWORD": password, "REDIS_APP_PASSWORD": app_password}
    if monitor_password:
        env["REDIS_MONITOR_PASSWORD"] = monitor_password
    done = subprocess.run([str(SH), str(script)], capture_output=True, text=True, env=env, check=False,
                          timeout=60)
    return done, data


NODES_CONF = """\
aaa 10.0.0.5:6379@16379,redis-node-1 myself,master - 0 0 1 connected 0-5460
bbb 10.0.0.9:6379@16379,redis-node-2 master - 0 0 2 connected 5461-10922
ccc 10.0.0.7:6379@16379,redis-node-3 slave aaa 0 0 1 connected
ddd 10.0.0.8:6379@16379, master - 0 0 3 connected 10923-16383
vars currentEpoch 3 lastVoteEpoch 0
"""


@needs_sh
def test_start_passes_the_password_on_stdin_only(tmp_path: Path) -> None:
    done, _ = run_start(tmp_path, spec(), "s3cret-Pass_1")
    assert done.returncode == 0, done.stderr
    # The config file, then "-": the rest of the configuration comes from stdin.
    assert (tmp_path / "argv").read_text().splitlines() == ["/conf/redis.conf", "-"]
    assert (tmp_path / "stdin").read_text().splitlines() == [
        'requirepass "s3cret-Pass_1"',
        f'user banyan-app reset on >"app-Pass_2" {config.APP_ACL}',
        'masterauth "s3cret-Pass_1"',
    ]
    if os.geteuid() == 0:
        assert (tmp_path / "user").read_text() == "redis\n", "a root start drops to the redis user"
        assert (tmp_path / "chown").read_text().startswith("redis:redis "), "and gives it the data first"


@needs_sh
@pytest.mark.parametrize("password", ["", 'quo"te', "back\\slash", "new\nline", "sp ace"])
def test_start_refuses_a_missing_or_unsafe_password(tmp_path: Path, password: str) -> None:
    done, _ = run_start(tmp_path, standalone(), password)
    assert done.returncode == 64
    assert not (tmp_path / "argv").exists(), "redis-server must not start"


@needs_sh
@pytest.mark.parametrize("password", ["", 'quo"te', "sp ace", "new\nline"])
def test_start_refuses_a_missing_or_unsafe_app_password(tmp_path: Path, password: str) -> None:
    done, _ = run_start(tmp_path, standalone(), "admin-pw", app_password=password)
    assert done.returncode == 64
    assert "REDIS_APP_PASSWORD" in done.stderr
    assert not (tmp_path / "argv").exists(), "redis-server must not start"


@needs_sh
def test_with_monitoring_the_start_script_also_defines_the_exporters_user(tmp_path: Path) -> None:
    assert config.MONITOR_USER not in config.render_start_script(spec()), "only where the monitoring part is on"
    done, _ = run_start(tmp_path, spec(), "s3cret-Pass_1", monitor_password="mon-Pass_3")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "stdin").read_text().splitlines() == [
        'requirepass "s3cret-Pass_1"',
        f'user banyan-app reset on >"app-Pass_2" {config.APP_ACL}',
        f'user banyan-monitor reset on >"mon-Pass_3" {config.monitor_acl(spec())}',
        'masterauth "s3cret-Pass_1"',
    ]


@needs_sh
@pytest.mark.parametrize("password", ["", 'quo"te', "sp ace"])
def test_with_monitoring_start_refuses_a_missing_or_unsafe_exporter_password(tmp_path: Path, password: str) -> None:
    # run_start leaves an empty password out of the environment: the unset case.
    done, _ = run_start(tmp_path, standalone(), "admin-pw", monitor_password=password)
    assert done.returncode == 64
    assert ("REDIS_MONITOR_PASSWORD is empty" if not password else "REDIS_MONITOR_PASSWORD may only") in done.stderr
    assert not (tmp_path / "argv").exists(), "redis-server must not start"


@pytest.mark.parametrize("make", [spec, standalone, lambda: spec(version="6.2")])
def test_the_exporters_user_runs_exactly_the_exporters_statistics_commands(make: Any) -> None:
    """redis_exporter v1.45.0's commands for our flags (components/redis/config.py MONITOR_ACL): no key pattern, no
    channel, no category; neither CONFIG GET (the administrator's password) nor SLOWLOG GET (keys and values)."""
    s = make()
    rules = config.monitor_acl(s).split()
    assert rules[:2] == ["resetchannels", "-@all"], "nothing but what follows"
    wanted = {"+client|setname", "+info", "+latency|latest", "+slowlog|len"}
    assert set(rules[2:]) == (wanted | {"+cluster|info"} if s.mode == "cluster" else wanted)
    assert not [r for r in rules if r[0] in "~%&" or r.startswith("+@") or r in {"allkeys", "allchannels"}]
    assert config.monitor_user_directive(s) == (
        f'user banyan-monitor reset on >"$REDIS_MONITOR_PASSWORD" {config.monitor_acl(s)}')


def test_app_acl_allows_cluster_clients_by_name_where_categories_do_not_split_subcommands() -> None:
    """From 7.0 the slot-map subcommands are outside @admin; 6.2 puts all of CLUSTER and CLIENT there."""
    assert config.app_acl(spec(version="7.0")) == config.APP_ACL
    old = config.app_acl(spec(version="6.2"))
    assert old.startswith(config.APP_ACL)
    assert {"+cluster|slots", "+cluster|nodes", "+client|setname"} <= set(old.split())
    # Nothing administrative is given back, on any version.
    for rules in (config.APP_ACL, old):
        assert not {r for r in rules.split() if r.startswith("+")} & {"+@admin", "+@dangerous", "+config",
                                                                       "+flushall", "+cluster|reset"}


@needs_sh
def test_start_rewrites_peer_addresses_from_their_host_names(tmp_path: Path) -> None:
    hosts = {"redis-node-1": "10.0.0.2", "redis-node-2": "10.0.0.9", "redis-node-3": "10.0.0.3"}
    done, data = run_start(tmp_path, spec(), "pw", NODES_CONF, hosts)
    assert done.returncode == 0, done.stderr
    lines = (data / "nodes.conf").read_text().splitlines()
    assert lines == [
        "aaa 10.0.0.2:6379@16379,redis-node-1 myself,master - 0 0 1 connected 0-5460",
        "bbb 10.0.0.9:6379@16379,redis-node-2 master - 0 0 2 connected 5461-10922",
        "ccc 10.0.0.3:6379@16379,redis-node-3 slave aaa 0 0 1 connected",
        # No host name stored: nothing to resolve, the line stays.
        "ddd 10.0.0.8:6379@16379, master - 0 0 3 connected 10923-16383",
        "vars currentEpoch 3 lastVoteEpoch 0",
    ]
    assert "redis-node-1 is now at 10.0.0.2" in done.stderr
    assert not list(data.glob("nodes.conf.*")), "no temporary file left behind"


@needs_sh
def test_start_keeps_an_address_it_cannot_resolve(tmp_path: Path) -> None:
    hosts = {"redis-node-1": "10.0.0.2", "redis-node-2": "10.0.0.9"}
    done, data = run_start(tmp_path, spec(), "pw", NODES_CONF, hosts, resolve_timeout_s=0)
    assert done.returncode == 0, done.stderr
    text = (data / "nodes.conf").read_text()
    assert "ccc 10.0.0.7:6379@16379,redis-node-3 slave" in text
    assert "aaa 10.0.0.2:6379@16379,redis-node-1 myself" in text
