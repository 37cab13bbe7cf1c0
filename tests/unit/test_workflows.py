"""The GitHub Actions workflows (.github/workflows): they validate against GitHub's workflow schema,
and the properties a careless edit would break hold: pinned actions, the README's test command, one
preview job per stack, least-privilege permissions, the plan comment's marker and what its script does."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from testkit import PROJECT_DIR

WORKFLOWS = PROJECT_DIR / ".github" / "workflows"
TEST_WORKFLOW = WORKFLOWS / "test.yml"
PREVIEW_WORKFLOW = WORKFLOWS / "preview.yml"
STACKS = sorted(p.name.split(".")[1] for p in PROJECT_DIR.glob("Pulumi.*.yaml"))
# owner/repo[/path]@ref: a version tag (v4, v4.2, v4.2.1) or a full commit SHA.
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@(v\d+(\.\d+){0,2}|[0-9a-f]{40})$")


def lint(*paths: Path) -> list[str]:
    """Problems check-jsonschema finds against the GitHub workflow schema it vendors (no network)."""
    beside = Path(sys.executable).parent / "check-jsonschema"
    tool = str(beside) if beside.exists() else shutil.which("check-jsonschema")
    if not tool:
        pytest.fail("check-jsonschema is not installed: pip install -r requirements-dev.txt")
    done = subprocess.run([tool, "--builtin-schema", "vendor.github-workflows", "-o", "json", *map(str, paths)],
                          capture_output=True, text=True, check=False, cwd=PROJECT_DIR, timeout=120)
    report: dict[str, Any] = json.loads(done.stdout)
    assert (done.returncode == 0) == (report["status"] == "ok"), done.stderr
    return [f"{e['filename']} {e['path']}: {(e.get('best_deep_match') or e)['message']}"
            for e in report.get("errors", [])]


def load(path: Path) -> dict[str, Any]:
    raw: dict[Any, Any] = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the key `on` as the boolean true.
    return {("on" if key is True else str(key)): value for key, value in raw.items()}


def steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for job in workflow["jobs"].values() for s in job.get("steps", [])]


def uses(workflow: dict[str, Any]) -> list[str]:
    refs = [s["uses"] for s in steps(workflow) if "uses" in s]
    return refs + [j["uses"] for j in workflow["jobs"].values() if "uses" in j]


def step_using(workflow: dict[str, Any], action: str) -> dict[str, Any]:
    """The one step that uses `action` (for the Pulumi action: the one that runs a command, not the one
    that only installs the CLI)."""
    found = [s for s in steps(workflow) if s.get("uses", "").split("@")[0] == action]
    if len(found) > 1:
        found = [s for s in found if s.get("with", {}).get("command")]
    [step] = found
    return step


def test_the_workflows_exist() -> None:
    assert sorted(p.name for p in WORKFLOWS.glob("*.yml")) == ["preview.yml", "test.yml"]


def test_the_workflows_validate_against_the_github_schema() -> None:
    assert lint(*sorted(WORKFLOWS.glob("*.yml"))) == []


def test_the_schema_check_catches_a_broken_workflow(tmp_path: Path) -> None:
    """The schema check really checks: a misspelt job key, and a bad `on:` event."""
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\n"
        "jobs:\n"
        "  t:\n"
        "    runs-on: ubuntu-24.04\n"
        "    stepz: []\n"
        "    steps:\n"
        "      - run: echo hi\n"
    )
    assert "stepz" in " ".join(lint(broken))
    broken.write_text("on: pushh\njobs:\n  t:\n    runs-on: ubuntu-24.04\n    steps:\n      - run: echo hi\n")
    assert lint(broken)


@pytest.mark.parametrize("path", [TEST_WORKFLOW, PREVIEW_WORKFLOW], ids=lambda p: p.name)
def test_every_action_is_pinned_to_a_version(path: Path) -> None:
    refs = uses(load(path))
    assert refs
    assert [r for r in refs if not PINNED.match(r)] == []
    assert not [r for r in refs if r.rsplit("@", 1)[1] in ("main", "master", "HEAD", "latest")]


@pytest.mark.parametrize("path", [TEST_WORKFLOW, PREVIEW_WORKFLOW], ids=lambda p: p.name)
def test_permissions_are_least_privilege(path: Path) -> None:
    workflow = load(path)
    assert "permissions" in workflow, "set top-level permissions; the default token may write everything"
    grants: dict[str, str] = {}
    for scope in [workflow["permissions"], *(j.get("permissions", {}) for j in workflow["jobs"].values())]:
        assert isinstance(scope, dict), "no read-all / write-all shorthands"
        grants.update({k: v for k, v in scope.items() if v == "write"})
    allowed = {"pull-requests": "write"} if path == PREVIEW_WORKFLOW else {}
    assert grants == allowed


def test_the_test_workflow_runs_the_readme_command_on_prs_and_main() -> None:
    workflow = load(TEST_WORKFLOW)
    assert "pull_request" in workflow["on"]
    assert "main" in workflow["on"]["push"]["branches"]
    runs = [s.get("run", "") for s in steps(workflow)]
    [command] = [r for r in runs if ".ci/run" in r or "./scripts/test" in r]
    readme = (PROJECT_DIR / "README.md").read_text()
    assert "./scripts/test" in readme and ".ci/run" in readme
    # Root for apt and network namespaces, with the PATH that holds setup-python's interpreter.
    assert re.search(r'sudo -E env "PATH=\$PATH" bash \.ci/run', command)
    python = step_using(workflow, "actions/setup-python")
    assert str(python["with"]["python-version"]) == "3.11"
    assert steps(workflow).index(python) < runs.index(command)


def test_the_test_workflow_lays_out_the_schemas_the_tests_read() -> None:
    script = next(s["run"] for s in steps(load(TEST_WORKFLOW)) if "shared/schemas" in s.get("run", ""))
    expected = {p.name for p in (PROJECT_DIR.parent / "shared" / "schemas" / "crds").glob("*.yaml")}
    for name in expected or {"postgresql.cnpg.io_clusters.yaml", "rabbitmq.com_rabbitmqclusters.yaml"}:
        assert name in script
    assert "pulumi-docker/schema.json" in script and "pulumi package get-schema" in script


def test_the_preview_workflow_covers_exactly_the_stacks() -> None:
    workflow = load(PREVIEW_WORKFLOW)
    assert list(workflow["on"]) == ["pull_request"]
    [job] = workflow["jobs"].values()
    assert sorted(job["strategy"]["matrix"]["stack"]) == STACKS


def test_the_preview_runs_pulumi_preview_with_one_updating_comment_per_stack() -> None:
    workflow = load(PREVIEW_WORKFLOW)
    pulumi = step_using(workflow, "pulumi/actions")
    with_ = pulumi["with"]
    assert with_["command"] == "preview"
    assert with_["stack-name"] == "${{ matrix.stack }}"
    assert with_["comment-on-pr"] is True and with_["edit-pr-comment"] is True
    assert with_["policyPacks"] == "policy" and (PROJECT_DIR / "policy" / "PulumiPolicy.yaml").exists()
    assert with_["cloud-url"] == "${{ vars.PULUMI_BACKEND_URL }}"
    assert pulumi["env"]["PULUMI_CONFIG_PASSPHRASE"] == "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}"
    text = PREVIEW_WORKFLOW.read_text()
    assert "secrets.KUBECONFIG" in text and "vars.DOCKER_HOST" in text


def test_the_offline_plan_is_posted_under_a_marker_per_stack() -> None:
    workflow = load(PREVIEW_WORKFLOW)
    plan = next(s for s in steps(workflow) if "tooling.plan" in s.get("run", ""))
    assert 'python -m tooling.plan "$STACK" --format markdown' in plan["run"]
    [job] = workflow["jobs"].values()
    assert job["env"]["STACK"] == "${{ matrix.stack }}"
    script = step_using(workflow, "actions/github-script")["with"]["script"]
    assert "<!-- banyan-plan:${stack} -->" in script


def test_the_plan_command_the_workflow_runs_works() -> None:
    done = subprocess.run([sys.executable, "-m", "tooling.plan", "dev", "--format", "markdown"], cwd=PROJECT_DIR,
                          capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "dev" in done.stdout and "|" in done.stdout  # Markdown with tables, naming the stack


def test_the_comment_script_creates_once_then_edits_its_own_comment(tmp_path: Path) -> None:
    """The github-script step run under Node with a stand-in GitHub API: the first run creates the
    stack's comment, the next edits it; another stack's comment and a person's quote stay untouched."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed; the comment script cannot be run here")
    script = step_using(load(PREVIEW_WORKFLOW), "actions/github-script")["with"]["script"]
    plan = tmp_path / "plan.md"
    plan.write_text("**banyan plan** stack dev\n")
    harness = tmp_path / "harness.js"
    harness.write_text("""
const comments = [
  {id: 1, user: {type: 'User'}, body: '<!-- banyan-plan:dev -->\\nquoted by a person'},
  {id: 2, user: {type: 'Bot'}, body: '<!-- banyan-plan:prod -->\\nthe prod plan'},
];
const calls = [];
const github = {
  paginate: async (method, args) => { calls.push(['list', args.issue_number]); return comments; },
  rest: {issues: {
    listComments: () => {},
    updateComment: async (a) => {
      calls.push(['update', a.comment_id]);
      comments.find(c => c.id === a.comment_id).body = a.body;
    },
    createComment: async (a) => {
      calls.push(['create', a.issue_number]);
      comments.push({id: 3, user: {type: 'Bot'}, body: a.body});
    },
  }},
};
const context = {repo: {owner: 'o', repo: 'r'}, payload: {pull_request: {number: 7}}};
const run = new Function('github', 'context', 'require', 'return (async () => {' + SCRIPT + '})()');
(async () => {
  await run(github, context, require);
  await run(github, context, require);
  process.stdout.write(JSON.stringify({calls, bodies: comments.map(c => c.body)}));
})().catch(e => { console.error(e); process.exit(1); });
""".replace("SCRIPT", json.dumps(script)))
    env = {**os.environ, "STACK": "dev", "PLAN_FILE": str(plan)}
    done = subprocess.run([node, str(harness)], capture_output=True, text=True, env=env, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["calls"] == [["list", 7], ["create", 7], ["list", 7], ["update", 3]]
    assert result["bodies"] == ["<!-- banyan-plan:dev -->\nquoted by a person",
                                "<!-- banyan-plan:prod -->\nthe prod plan",
                                "<!-- banyan-plan:dev -->\n**banyan plan** stack dev\n"]
