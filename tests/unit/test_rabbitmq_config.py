"""RabbitMQ's rendered files: one cluster from every node's list, quorum where read, no guest, version-true keys."""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from components.rabbitmq.config import (
    ADMIN_PASSWORD_ENV,
    ADMIN_USER_ENV,
    APP_PASSWORD_ENV,
    APP_USER_ENV,
    COOKIE_ENV,
    disk_free_limit_mib,
    partition_handling,
    render_enabled_plugins,
    render_entrypoint,
    render_operator_config,
    render_rabbitmq_conf,
)
from model.spec import RabbitMQSpec
from tests.helpers import spec_for

# Mapping names of RabbitMQ 3.10.8's rabbit.schema and rabbitmq_management.schema (Debian 12's server) that cover
# every key the renderer may write for version 3.10; `$name` is one path segment. A new key belongs here only after
# checking it in that schema: 3.10 refuses to boot on a key it does not know (e.g. default_queue_type).
RABBITMQ_3_10_MAPPINGS = (
    "cluster_formation.peer_discovery_backend",
    "cluster_formation.classic_config.nodes.$node",
    "cluster_partition_handling",
    "listeners.tcp.$name",
    "management.tcp.port",
    "loopback_users.$user",
    "vm_memory_high_watermark.absolute",
    "disk_free_limit.absolute",
    "log.console",
    "log.console.level",
    "log.file",
)
# Where Debian's package keeps the schemas of the server it installs (only read when present).
DEBIAN_SCHEMAS = "/usr/lib/rabbitmq/lib/rabbitmq_server-*/plugins/*/priv/schema/*.schema"


def mq(**update: Any) -> RabbitMQSpec:
    base = spec_for(tier="medium").rabbitmq
    return base.model_copy(update=update)


def settings(conf: str) -> list[tuple[str, str]]:
    """(key, value) per setting line, in file order, duplicates kept."""
    pairs = []
    for line in conf.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition(" = ")
        assert sep, f"not a `key = value` line: {line!r}"
        pairs.append((key.strip(), value.strip()))
    return pairs


def as_dict(conf: str) -> dict[str, str]:
    pairs = settings(conf)
    keys = [k for k, _ in pairs]
    assert len(keys) == len(set(keys)), f"duplicate keys: {keys}"
    return dict(pairs)


def mapping_regex(mapping: str) -> re.Pattern[str]:
    return re.compile(r"\.".join("[^.]+" if part.startswith("$") else re.escape(part) for part in mapping.split(".")))


def unmapped(keys: list[str], mappings: list[str] | tuple[str, ...]) -> list[str]:
    patterns = [mapping_regex(m) for m in mappings]
    return [k for k in keys if not any(p.fullmatch(k) for p in patterns)]


@pytest.mark.parametrize("nodes", [1, 3, 5, 7])
def test_every_node_lists_every_node(nodes: int) -> None:
    spec = mq(nodes=nodes)
    conf = as_dict(render_rabbitmq_conf(spec))
    assert conf["cluster_formation.peer_discovery_backend"] == "classic_config"
    listed = {k: v for k, v in conf.items() if k.startswith("cluster_formation.classic_config.nodes.")}
    assert sorted(listed.values()) == sorted(f"rabbit@{name}" for name in spec.instance_names)
    assert len(listed) == nodes
    assert listed["cluster_formation.classic_config.nodes.1"] == "rabbit@rabbitmq-1"


@pytest.mark.parametrize(("nodes", "expected"), [(1, "ignore"), (2, "autoheal"), (3, "pause_minority"),
                                                 (5, "pause_minority"), (7, "pause_minority")])
def test_partition_handling_suits_the_node_count(nodes: int, expected: str) -> None:
    assert partition_handling(nodes) == expected
    for version in ("3.10", "3.13", "4.2"):
        assert as_dict(render_rabbitmq_conf(mq(nodes=nodes, version=version)))["cluster_partition_handling"] == expected


@pytest.mark.parametrize("version", ["4.3", "4.4", "5.0"])
def test_no_partition_handling_where_khepri_replaced_mnesia(version: str) -> None:
    """4.3 removed Mnesia: the cluster_partition_handling keys are accepted without effect, and its release notes
    ask to remove them; neither file carries one."""
    spec = mq(nodes=3, version=version)
    for conf in (render_rabbitmq_conf(spec), render_operator_config(spec)):
        assert "cluster_partition_handling" not in conf
        assert "default_queue_type = quorum" in conf


def test_the_entrypoint_enables_every_feature_flag_without_stopping_the_node() -> None:
    """Upgrades need the previous series' flags enabled (4.x: all of 3.13's; 4.3: all of 4.2's). A refusal (a peer
    of an older version, mid-upgrade) is logged, never a reason to stop the node."""
    script = render_entrypoint()
    body = script[script.index("reconcile() {"):script.index("# A node whose users")]
    line = next(ln for ln in body.splitlines() if "enable_feature_flag" in ln)
    assert line.strip() == "if ! ctl enable_feature_flag all >/dev/null 2>&1; then"
    assert body.index('log "users reconciled"') < body.index("enable_feature_flag")
    after = body[body.index("enable_feature_flag"):]
    assert "return 1" not in after.split("fi", 1)[0]


@pytest.mark.parametrize(
    ("version", "queue_type", "expected"),
    [
        ("3.13", "quorum", "quorum"),
        ("4.0", "quorum", "quorum"),
        ("3.13", "classic", None),
        ("3.12", "quorum", None),
        ("3.10", "quorum", None),
        ("3.10", "classic", None),
    ],
)
def test_quorum_default_only_where_the_version_reads_it(version: str, queue_type: str, expected: str | None) -> None:
    conf = as_dict(render_rabbitmq_conf(mq(version=version, default_queue_type=queue_type)))
    assert conf.get("default_queue_type") == expected


def test_the_resolved_dev_stack_defaults_to_quorum() -> None:
    conf = as_dict(render_rabbitmq_conf(spec_for().rabbitmq))
    assert conf["default_queue_type"] == "quorum"


def test_there_is_no_guest_and_no_credential_in_the_file() -> None:
    for spec in (mq(), mq(version="3.10", default_queue_type="classic"), mq(nodes=1)):
        conf = as_dict(render_rabbitmq_conf(spec))
        # The admin comes from RABBITMQ_DEFAULT_USER/PASS (secret env); the file holds no user and no password.
        assert not {k for k in conf if k.startswith(("default_user", "default_pass"))}
        assert [k for k in conf if "guest" in k] == ["loopback_users.guest"]
        # A hand-made guest would still be confined to the node's loopback ("none" would open it to the network).
        assert conf["loopback_users.guest"] == "true"
        assert "loopback_users" not in conf


@given(st.integers(min_value=64, max_value=256 * 1024))
def test_watermark_follows_the_spec(watermark_mib: int) -> None:
    conf = as_dict(render_rabbitmq_conf(mq(memory_high_watermark_mib=watermark_mib)))
    assert conf["vm_memory_high_watermark.absolute"] == f"{watermark_mib}MiB"
    assert "vm_memory_high_watermark.relative" not in conf


@pytest.mark.parametrize("tier", ["small", "medium", "large"])
def test_watermark_sits_below_the_container_limit(tier: str) -> None:
    spec = spec_for(tier=tier).rabbitmq
    rendered = as_dict(render_rabbitmq_conf(spec))["vm_memory_high_watermark.absolute"]
    assert int(rendered.removesuffix("MiB")) < spec.resources.limits.memory_mib


@given(memory_mib=st.integers(min_value=64, max_value=64 * 1024), storage_gib=st.integers(min_value=1, max_value=4096))
def test_disk_free_limit_is_sane(memory_mib: int, storage_gib: int) -> None:
    base = mq().resources
    resources = base.model_copy(update={"limits": base.limits.model_copy(update={"memory_mib": memory_mib})})
    spec = mq(resources=resources, storage_gib=storage_gib)
    limit = disk_free_limit_mib(spec)
    assert limit <= storage_gib * 1024 // 2, "a volume must not start life in a disk alarm"
    assert limit >= min(512, storage_gib * 1024 // 2)
    assert limit >= min(memory_mib, storage_gib * 1024 // 2)
    assert as_dict(render_rabbitmq_conf(spec))["disk_free_limit.absolute"] == f"{limit}MiB"


def test_ports_follow_the_spec() -> None:
    conf = as_dict(render_rabbitmq_conf(mq(port=5673, management_port=15673)))
    assert conf["listeners.tcp.default"] == "5673"
    assert conf["management.tcp.port"] == "15673"


@pytest.mark.parametrize("nodes", [1, 2, 3, 5])
def test_the_3_10_rendering_holds_only_keys_3_10_reads(nodes: int) -> None:
    # Even a spec that asks for quorum (the resolver downgrades it first) must not get the key on 3.10.
    spec = mq(version="3.10", nodes=nodes, default_queue_type="quorum")
    keys = [k for k, _ in settings(render_rabbitmq_conf(spec))]
    assert unmapped(keys, RABBITMQ_3_10_MAPPINGS) == []
    assert "default_queue_type" not in keys


def test_the_3_10_check_would_catch_the_3_13_only_key() -> None:
    keys = [k for k, _ in settings(render_rabbitmq_conf(mq(version="3.13", default_queue_type="quorum")))]
    assert unmapped(keys, RABBITMQ_3_10_MAPPINGS) == ["default_queue_type"]


def test_every_key_is_in_the_installed_servers_schema() -> None:
    """Against the schema files of the RabbitMQ installed here (Debian's package), if there is one."""
    schema_files = sorted(Path("/").glob(DEBIAN_SCHEMAS.lstrip("/")))
    if not schema_files:
        pytest.skip("no Debian rabbitmq-server installed here; the allowlist test above still holds for 3.10")
    found = re.search(r"rabbitmq_server-(\d+)\.(\d+)\.", str(schema_files[0]))
    assert found, schema_files[0]
    installed = f"{found.group(1)}.{found.group(2)}"
    mappings = [m for f in schema_files for m in re.findall(r'\{mapping,\s*"([^"]+)"', f.read_text())]
    for queue_type in ("quorum", "classic"):
        spec = mq(version=installed, default_queue_type=queue_type)
        keys = [k for k, _ in settings(render_rabbitmq_conf(spec))]
        assert unmapped(keys, mappings) == [], f"RabbitMQ {installed} does not know these keys"


def test_enabled_plugins_is_an_erlang_list_with_management() -> None:
    text = render_enabled_plugins(mq())
    assert re.fullmatch(r"\[[a-z_]+(,[a-z_]+)*\]\.\n", text), text
    plugins = text.strip()[1:-2].split(",")
    assert "rabbitmq_management" in plugins
    # The file replaces the image's own, which enables the Prometheus plugin: it must stay on.
    assert "rabbitmq_prometheus" in plugins
    # Classic-config discovery is part of the broker; a discovery plugin would only add a backend we do not use.
    assert not [p for p in plugins if p.startswith("rabbitmq_peer_discovery")]
    assert render_enabled_plugins(mq(version="3.10")) == text


USERS_ENV = {ADMIN_USER_ENV: "banyan-admin", ADMIN_PASSWORD_ENV: "adminpw", APP_USER_ENV: "banyan-app",
             APP_PASSWORD_ENV: "apppw"}


@pytest.fixture
def entrypoint_sandbox(tmp_path: Path) -> dict[str, Path]:
    """The rendered entrypoint with stand-ins for rabbitmq-server, rabbitmqctl, gosu and chown, which record
    what they got. The rabbitmqctl stand-in knows the users listed in `users` (one name a line) and accepts
    the logins listed in `logins` (`name password` a line)."""
    bin_dir, home = tmp_path / "bin", tmp_path / "home"
    bin_dir.mkdir()
    home.mkdir()
    script = tmp_path / "entrypoint.sh"
    script.write_text(render_entrypoint())
    seen, chowned, ctl = tmp_path / "seen", tmp_path / "chowned", tmp_path / "ctl"
    users, logins = tmp_path / "users", tmp_path / "logins"
    users.write_text("guest\n")
    logins.touch()
    (bin_dir / "rabbitmq-server").write_text(
        f'#!/bin/sh\necho "args=$*" > {seen}\necho "cookie_env=${{{COOKIE_ENV}-unset}}" >> {seen}\n'
        f'echo "admin_password_env=${{{ADMIN_PASSWORD_ENV}-unset}}" >> {seen}\n'
    )
    # Passwords arrive on standard input (recorded after `<`), never as arguments.
    (bin_dir / "rabbitmqctl").write_text(f"""#!/bin/sh
[ "$1" = -q ] && shift
case "$1" in
  authenticate_user|add_user|change_password) pw=$(cat); echo "$* < $pw" >> {ctl} ;;
  *) echo "$*" >> {ctl} ;;
esac
case "$1" in
  authenticate_user) grep -qx "$2 $pw" {logins} ;;
  list_users) while read -r u; do printf '%s\\t[]\\n' "$u"; done < {users} ;;
  add_user) echo "$2" >> {users}; echo "$2 $pw" >> {logins} ;;
  change_password) echo "$2 $pw" >> {logins} ;;
esac
""")
    (bin_dir / "chown").write_text(f'#!/bin/sh\necho "$*" >> {chowned}\n')
    (bin_dir / "gosu").write_text('#!/bin/sh\nshift\nexec "$@"\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    return {"script": script, "bin": bin_dir, "home": home, "seen": seen, "chowned": chowned, "ctl": ctl,
            "users": users, "logins": logins}


def run_entrypoint(box: dict[str, Path], cookie: str | None,
                   users_env: dict[str, str] = USERS_ENV) -> subprocess.CompletedProcess[str]:
    """Returns once the node's stand-in has exited and the background reconciliation is done (it holds the
    same output pipes)."""
    env = {"PATH": f"{box['bin']}:{os.environ.get('PATH', '/usr/bin:/bin')}", "HOME": str(box["home"]),
           **users_env}
    if cookie is not None:
        env[COOKIE_ENV] = cookie
    return subprocess.run(["sh", str(box["script"]), "-s"], env=env, capture_output=True, text=True,
                          check=False, timeout=30)


def test_entrypoint_writes_a_private_cookie_and_hides_the_variable(entrypoint_sandbox: dict[str, Path]) -> None:
    box = entrypoint_sandbox
    cookie = "A" * 20 + "b" * 28
    done = run_entrypoint(box, cookie)
    assert done.returncode == 0, done.stderr
    cookie_file = box["home"] / ".erlang.cookie"
    assert cookie_file.read_text() == cookie, "no trailing newline: Erlang would take it as part of the cookie"
    assert stat.S_IMODE(cookie_file.stat().st_mode) == 0o400, "Erlang refuses a cookie others can read"
    # The broker gets its arguments, and neither the cookie nor the administrator's password in its env.
    assert box["seen"].read_text().splitlines() == ["args=-s", "cookie_env=unset", "admin_password_env=unset"]
    assert [p.name for p in box["home"].iterdir()] == [".erlang.cookie"], "no temporary file left behind"
    if os.geteuid() == 0:
        assert box["chowned"].read_text().split()[0] == "rabbitmq:rabbitmq"
    else:
        assert not box["chowned"].exists()


def test_entrypoint_overwrites_a_read_only_cookie_on_restart(entrypoint_sandbox: dict[str, Path]) -> None:
    box = entrypoint_sandbox
    assert run_entrypoint(box, "first" * 4).returncode == 0
    done = run_entrypoint(box, "second" * 4)
    assert done.returncode == 0, done.stderr
    assert (box["home"] / ".erlang.cookie").read_text() == "second" * 4


def test_entrypoint_refuses_to_start_without_a_cookie(entrypoint_sandbox: dict[str, Path]) -> None:
    box = entrypoint_sandbox
    done = run_entrypoint(box, None)
    assert done.returncode != 0
    assert COOKIE_ENV in done.stderr
    assert not box["seen"].exists(), "the broker must not start"
    assert not (box["home"] / ".erlang.cookie").exists()


def test_entrypoint_reconciles_both_users_and_removes_guest(entrypoint_sandbox: dict[str, Path]) -> None:
    """An empty cluster, or a retained volume whose users hold an earlier deployment's passwords: either way
    the users end up with this deployment's passwords, the app user with no tags, and no guest."""
    box = entrypoint_sandbox
    box["users"].write_text("guest\nbanyan-admin\n")
    box["logins"].write_text("banyan-admin old-password\n")
    done = run_entrypoint(box, "c" * 20)
    assert done.returncode == 0, done.stderr
    assert "users reconciled" in done.stderr
    calls = box["ctl"].read_text().splitlines()
    assert calls[0].startswith("await_startup --timeout ")
    assert "change_password banyan-admin < adminpw" in calls, "an existing user gets this deployment's password"
    assert "add_user banyan-app < apppw" in calls
    assert not [c for c in calls if "pw" in c.split(" < ")[0]], "no password as an argument"
    assert "set_user_tags banyan-admin administrator" in calls
    assert "set_user_tags banyan-app" in calls, "the applications' user has no management tags"
    assert "set_permissions -p / banyan-app .* .* .*" in calls
    assert "delete_user guest" in calls


def test_entrypoint_leaves_a_current_password_alone(entrypoint_sandbox: dict[str, Path]) -> None:
    box = entrypoint_sandbox
    box["users"].write_text("banyan-admin\nbanyan-app\n")
    box["logins"].write_text("banyan-admin adminpw\nbanyan-app apppw\n")
    done = run_entrypoint(box, "c" * 20)
    assert done.returncode == 0, done.stderr
    calls = box["ctl"].read_text()
    assert "change_password" not in calls and "add_user" not in calls and "delete_user" not in calls


@pytest.mark.parametrize("missing", [ADMIN_USER_ENV, ADMIN_PASSWORD_ENV, APP_USER_ENV, APP_PASSWORD_ENV])
def test_entrypoint_refuses_to_start_without_its_users(entrypoint_sandbox: dict[str, Path], missing: str) -> None:
    box = entrypoint_sandbox
    done = run_entrypoint(box, "c" * 20, {k: v for k, v in USERS_ENV.items() if k != missing})
    assert done.returncode != 0 and missing in done.stderr
    assert not box["seen"].exists(), "the broker must not start"
