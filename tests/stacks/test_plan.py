"""The offline plan: views, what-if, unknowns, and the diff that flags stateful replacements first."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from testkit import PROJECT_DIR, mock_secret_value
from tooling import plan as planmod


@pytest.fixture(scope="module")
def medium_dev() -> planmod.Plan:
    return planmod.build_plan("dev", {"tier": "medium"})


def test_text_view_has_every_part_the_totals_and_the_budget(medium_dev: planmod.Plan) -> None:
    text = planmod.render_text(medium_dev)
    spec = medium_dev.spec
    for part in ("nginx", "api-gateway", "user-service", "order-service", "postgres", "rabbitmq", "redis"):
        assert re.search(rf"^{part}\s", text, re.M), part
    total = re.search(r"^total\s+(\S+) / (\S+)\s", text, re.M)
    assert total is not None
    limit_cpu = sum(r.high * r.resources.limits.cpu_millis for r in planmod.part_rows(spec)) / 1000
    assert float(total.group(2)) == pytest.approx(limit_cpu)
    assert spec.budget.arithmetic() in text
    assert "banyan:index:PostgresCluster  banyan-postgres" in text
    assert "docker:index/volume:Volume  banyan-postgres-replica-2-data  [retained]" in text


def test_unknowns_are_shown_as_unknown_and_secrets_never(medium_dev: planmod.Plan) -> None:
    data = json.loads(planmod.render_json(medium_dev))
    create = data["resources"]["docker:index/container:Container banyan-redis-create"]["inputs"]
    # The step's label hashes the node container ids, which only the provider knows.
    assert {"label": "banyan.redis-nodes", "value": "<unknown>"} in create["labels"]
    dumped = json.dumps(data)
    # A Docker env item keeps its name; its value is a fingerprint of the stand-in, never the value.
    assert re.search(r'"DATABASE_URL=\[secret #[0-9a-f]{8}\]"', dumped)
    assert "mocksecret" not in dumped
    assert data["connection_budget"]["fits"] is True


def test_markdown_puts_the_summary_first_and_fits_one_comment(medium_dev: planmod.Plan,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    md = planmod.render_text(medium_dev, markdown=True)
    assert md.startswith("**banyan plan** stack dev")
    assert md.index("### capacity") < md.index("<details>")
    assert "banyan-postgres-replica-2" in md
    # A plan too long for one comment keeps its summary and cuts the resource list.
    monkeypatch.setattr(planmod, "MARKDOWN_LIMIT", len(md) // 2)
    cut = planmod.render_text(medium_dev, markdown=True)
    assert len(cut) <= len(md) // 2 + 300
    assert "(cut to fit one comment)" in cut and "### connection budget" in cut


def test_what_if_set_changes_the_plan() -> None:
    small = planmod.build_plan("dev")
    large = planmod.build_plan("dev", {"tier": "large"})
    assert len(large.rendering.resources) > len(small.rendering.resources)
    assert large.spec.redis.mode == "cluster"


def test_tier_change_diff_keeps_every_volume() -> None:
    before = planmod.records(planmod.build_plan("dev").rendering)
    after = planmod.records(planmod.build_plan("dev", {"tier": "large"}).rendering)
    changes = planmod.diff(before, after)
    assert not [c for c in changes if c.dangerous]
    assert any(c.kind == "create" and "banyan-postgres-replica-3" in c.key for c in changes)
    volumes = [c for c in changes if "volume:Volume" in c.key]
    assert volumes and all(c.kind == "create" for c in volumes)


def test_a_removed_or_replaced_volume_is_flagged_in_bold_first() -> None:
    before = planmod.records(planmod.build_plan("dev", {"tier": "medium"}).rendering)
    after = dict(before)
    removed = "docker:index/volume:Volume banyan-postgres-replica-2-data"
    del after[removed]
    renamed = "docker:index/volume:Volume banyan-rabbitmq-1-data"
    after[renamed] = json.loads(json.dumps(before[renamed]))
    after[renamed]["inputs"]["name"] = "something-else"
    gw = "docker:index/container:Container banyan-gateway-1"
    after[gw] = json.loads(json.dumps(before[gw]))
    after[gw]["inputs"]["memory"] = 4096
    changes = planmod.diff(before, after)
    assert [c.key for c in changes[:2]] == [removed, renamed]
    assert changes[0].kind == "delete" and changes[1].kind == "replace"
    md = planmod.format_diff(changes, markdown=True)
    assert f"**STATEFUL DELETE {removed}**" in md
    assert md.index("STATEFUL") < md.index(gw)


def test_a_stateful_replace_comes_before_a_plain_delete() -> None:
    """Danger decides the order before the kind does: a plain delete (a gateway scaled away) never hides
    the replacement of a volume below it."""
    before = planmod.records(planmod.build_plan("dev", {"tier": "medium"}).rendering)
    after = dict(before)
    deleted = "docker:index/container:Container banyan-gateway-5"
    assert not planmod.is_stateful(before[deleted])
    del after[deleted]
    replaced = "docker:index/volume:Volume banyan-postgres-primary-data"
    after[replaced] = json.loads(json.dumps(before[replaced]))
    after[replaced]["inputs"]["name"] = "something-else"
    changes = planmod.diff(before, after)
    assert [(c.key, c.kind, c.dangerous) for c in changes] == [(replaced, "replace", True),
                                                               (deleted, "delete", False)]
    for markdown in (False, True):
        text = planmod.format_diff(changes, markdown=markdown)
        assert text.index(f"STATEFUL REPLACE {replaced}") < text.index(f"DELETE {deleted}")


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tooling.plan", *args], cwd=PROJECT_DIR, capture_output=True,
                          text=True, timeout=300, check=False)


def test_cli_rejects_bad_input_without_a_traceback() -> None:
    done = run_cli("dev", "--set", "tier=huge")
    assert done.returncode == 2
    assert 'banyan:tier: got "huge"' in done.stderr
    assert "Traceback" not in done.stderr
    bad_key = run_cli("dev", "--set", "services[0].env.bad-name=1")
    assert bad_key.returncode == 2 and "Traceback" not in bad_key.stderr and "cannot set" in bad_key.stderr
    missing = run_cli("nosuchstack")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "no stack file Pulumi.nosuchstack.yaml" in missing.stderr and "dev, prod" in missing.stderr


def test_cli_diff_against_a_git_ref() -> None:
    inside = subprocess.run(["git", "-C", str(PROJECT_DIR), "rev-parse", "HEAD"], capture_output=True,
                            text=True, check=False)
    if inside.returncode != 0:
        pytest.skip("not a git checkout")
    # HEAD may hold the plan at tooling/plan.py or, before the layout of issue 10, at infra/plan.py.
    has_plan = any(subprocess.run(["git", "-C", str(PROJECT_DIR), "cat-file", "-e", f"HEAD:{path}"],
                                  check=False).returncode == 0 for path in ("tooling/plan.py", "infra/plan.py"))
    if not has_plan:
        pytest.skip("HEAD predates the plan command")
    done = run_cli("dev", "--set", "tier=medium", "--diff-against", "HEAD", "--format", "markdown")
    assert done.returncode == 0, done.stderr
    assert "### changes" in done.stdout
    # The what-if applies to this checkout; HEAD's small tier is the baseline it is compared with.
    assert "- CREATE docker:index/container:Container banyan-postgres-replica-1" in done.stdout
    assert mock_secret_value("banyan-secrets-redis") not in done.stdout


# ---- what a reviewer sees: every change, old and new, no secret (issue 15) ---------------------------------

USER_1 = "docker:index/container:Container banyan-user-service-1"


def _diff(sets_before: dict[str, str], sets_after: dict[str, str], stack: str = "dev") -> planmod.Comparison:
    before = planmod.plan_data(planmod.build_plan(stack, sets_before))
    return planmod.compare(planmod.build_plan(stack, sets_after), before, "base")


@pytest.fixture(scope="module")
def small_dev() -> planmod.Plan:
    return planmod.build_plan("dev")


def test_docker_env_items_are_secret_one_by_one_and_unchanged_in_content() -> None:
    """Only the variables whose values are secret travel as secrets; the list Docker receives is what it was
    (sorted NAME=value items), so the change of form replaces no container."""
    from testkit import Secret, render_stack, unwrap

    rendering = render_stack("dev", set={"tier": "medium"})
    for c in rendering.of_type("docker:index/container:Container"):
        envs = c.inputs.get("envs") or []
        assert isinstance(envs, list), c.name
        items = unwrap(envs)
        assert items == sorted(items, key=lambda i: i.split("=", 1)[0]), c.name
        for item in envs:
            if not isinstance(item, Secret):
                assert "mocksecret" not in item, (c.name, item.split("=", 1)[0])
        if c.name.startswith("banyan-user-service-"):
            plain = {i.split("=", 1)[0] for i in envs if isinstance(i, str)}
            assert {"DATABASE_POOL_MAX", "RABBITMQ_PREFETCH", "PORT"} <= plain
            assert not plain & {"DATABASE_URL", "RABBITMQ_URL", "REDIS_PASSWORD", "REDIS_URL"}


def test_an_added_env_variable_is_shown_with_its_value() -> None:
    comparison = _diff({}, {"services[0].env.LOG_LEVEL": "debug"})
    change = next(c for c in comparison.result.changes if c.key == USER_1)
    assert [(d.path, d.new) for d in change.details] == [("envs[LOG_LEVEL]", "debug")]
    assert change.kind == "replace" and change.replaced_for == ("envs",)
    text = planmod.format_diff(comparison.result.changes, markdown=False)
    assert 'envs[LOG_LEVEL]: (none) -> "debug"' in text


def test_a_workload_change_shows_old_and_new_values_and_capacity() -> None:
    comparison = _diff({}, {"services[0].workload": "cpu"})
    change = next(c for c in comparison.result.changes if c.key == USER_1)
    assert {d.path: (d.old, d.new) for d in change.details} == {
        "envs[DATABASE_POOL_MAX]": ("10", "2"), "envs[RABBITMQ_PREFETCH]": ("10", "1")}
    lines = planmod.capacity_delta_lines(comparison.before, comparison.after, markdown=False)
    connections = next(line for line in lines if line.startswith("database connections"))
    assert re.search(r"60 of max_connections 100\s+36 of max_connections 100\s+changed", connections)


def test_a_changed_secret_is_marked_changed_and_never_shown() -> None:
    comparison = _diff({}, {"postgres.database": "other"})
    change = next(c for c in comparison.result.changes if c.key == USER_1)
    assert {d.path for d in change.details} >= {"envs[DATABASE_URL]", "envs[DATABASE_REPLICA_URLS]"}
    text = planmod.format_diff(comparison.result.changes, markdown=True)
    assert "envs[DATABASE_URL]: [secret] (changed)" in text
    assert "mocksecret" not in text and "other@" not in text and "/other" not in text


def test_numbered_instances_sort_as_numbers() -> None:
    large = planmod.build_plan("dev", {"tier": "large"})
    keys = [k for k in planmod.records(large.rendering) if "container:Container banyan-gateway-" in k]
    assert [k.rsplit("-", 1)[1] for k in keys] == [str(n) for n in range(1, 11)]
    tree = planmod.render_text(large)
    assert tree.index("banyan-gateway-2\n") < tree.index("banyan-gateway-10\n")
    comparison = _diff({}, {"tier": "large"})
    created = [c.key.rsplit("-", 1)[1] for c in comparison.result.changes
               if c.kind == "create" and "container:Container banyan-gateway-" in c.key]
    assert created == [str(n) for n in range(3, 11)]


def test_the_option_that_changed_is_named(small_dev: planmod.Plan) -> None:
    before = planmod.records(small_dev.rendering)
    after = json.loads(json.dumps(before))
    volume = "docker:index/volume:Volume banyan-postgres-primary-data"
    after[volume]["options"]["protect"] = True
    [change] = planmod.diff(before, after)
    assert change.fields == ("options.protect",) and change.kind == "update"
    assert "options.protect: false -> true" in planmod.format_diff([change], markdown=False)


def test_capacity_before_and_after_in_the_plan() -> None:
    comparison = _diff({}, {"tier": "large"})
    text = planmod.render_text(planmod.build_plan("dev", {"tier": "large"}), comparison=comparison)
    section = text[text.index("== capacity before (base) and after"):text.index("== capacity\n")]
    before, after = (planmod.capacity_totals(d) for d in (comparison.before, comparison.after))
    cpu = next(line for line in section.splitlines() if line.startswith("CPU limits"))
    assert cpu.split()[2:4] == [f"{before['cpu_limits'] / 1000:g}", f"{after['cpu_limits'] / 1000:g}"]
    assert re.search(r"^api-gateway instances\s+2\s+10\s+changed$", section, re.M)
    assert text.index("== changes against base") < text.index("== capacity before")


def test_a_big_diff_fits_one_comment_with_stateful_replaces_first(monkeypatch: pytest.MonkeyPatch) -> None:
    comparison = _diff({}, {"tier": "large"})
    volume = "docker:index/volume:Volume banyan-postgres-primary-data"
    comparison.result.changes.append(planmod.Change(volume, "replace", True, ("name",),
                                                    (planmod.FieldChange("name", "a", "b"),), ("name",)))
    comparison.result.changes.sort(key=lambda c: not c.dangerous)
    plan = planmod.build_plan("dev", {"tier": "large"})
    full = planmod.render_text(plan, markdown=True, comparison=comparison)
    assert len(full) <= planmod.MARKDOWN_LIMIT
    monkeypatch.setattr(planmod, "MARKDOWN_LIMIT", 12_000)
    cut = planmod.render_text(plan, markdown=True, comparison=comparison)
    assert len(cut) <= 12_000
    assert "cut to fit one comment" in cut and "### capacity before" in cut and "### connection budget" in cut
    changes = cut[cut.index("### changes"):]
    assert changes.index(f"**STATEFUL REPLACE {volume}") < changes.index("- REPLACE ")


def test_replacements_are_known_without_shared_or_the_cli(tmp_path: Path) -> None:
    """As the pull-request workflow runs it: a clone with no ../shared beside it and no Pulumi CLI."""
    clone = tmp_path / "repo"
    for part in ("model", "components", "infra", "testkit", "tooling"):
        shutil.copytree(PROJECT_DIR / part, clone / part, ignore=shutil.ignore_patterns("__pycache__"))
    for stack_file in PROJECT_DIR.glob("Pulumi*.yaml"):
        shutil.copy(stack_file, clone / stack_file.name)
    assert not (clone.parent / "shared").exists()
    done = subprocess.run([sys.executable, "-m", "tooling.plan", "dev", "--set", "services[0].workload=cpu",
                           "--diff-stack", "dev"], cwd=clone, capture_output=True, text=True, timeout=300,
                          check=False, env={**os.environ, "PYTHONPATH": str(clone), "PATH": os.defpath})
    assert done.returncode == 0, done.stderr
    assert f"- REPLACE {USER_1} (replaced for envs)" in done.stdout
