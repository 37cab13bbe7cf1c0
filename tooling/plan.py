"""The offline plan: what a stack would deploy, with no Pulumi CLI, backend, Docker or cluster.

    python -m tooling.plan dev                         # readable terminal view
    python -m tooling.plan dev --format markdown       # for a pull-request comment (summary first)
    python -m tooling.plan dev --format json
    python -m tooling.plan dev --set tier=large        # what-if, repeatable
    python -m tooling.plan dev --diff-against main     # what this checkout changes against a git ref
    python -m tooling.plan prod --diff-stack dev       # two stacks side by side
    python -m tooling.plan dev --format snapshot       # the golden snapshot (tests/snapshots/<stack>.txt)

The stack is rendered by the real program under Pulumi's mock engine in preview mode: what only a
provider can know (ids, generated passwords) stays unknown and is shown as <unknown>; secrets are
never printed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from infra.program import load_spec
from model.errors import ConfigError
from model.spec import PlatformSpec, ResourceSpec, WorkloadSpec
from model.stateful import is_stateful_type
from testkit.render import (
    PROJECT_DIR,
    UNKNOWN,
    NoStackFileError,
    RecordedResource,
    Rendering,
    Secret,
    apply_sets,
    project_name,
    read_stack_file,
    render_stack,
    to_engine_config,
)

REDACTED = "[secret]"
SHOWN_UNKNOWN = "<unknown>"
# A PR comment holds 65,536 characters; leave room for the marker and the other stack's comment.
MARKDOWN_LIMIT = 60_000
# Kubernetes fields the API server will not change in place.
# ConfigMaps and Secrets: pulumi-kubernetes replaces them on a data change (unless the provider is told
# they are mutable), so that the pods using them roll.
K8S_IMMUTABLE = {"StatefulSet": ("spec.selector", "spec.serviceName", "spec.volumeClaimTemplates"),
                 "Deployment": ("spec.selector",), "Job": ("spec.template",),
                 "ConfigMap": ("data", "binaryData"), "Secret": ("data", "stringData")}


def redact(value: Any) -> Any:
    """Inputs for display: secrets as [secret], unknowns as <unknown>."""
    if isinstance(value, Secret):
        return REDACTED
    if value is UNKNOWN:
        return SHOWN_UNKNOWN
    if isinstance(value, dict):
        return {k: redact(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


@dataclass(frozen=True)
class Plan:
    spec: PlatformSpec
    rendering: Rendering


def build_plan(stack: str, sets: Mapping[str, Any] | None = None, project_dir: Path = PROJECT_DIR) -> Plan:
    config = apply_sets(read_stack_file(stack, project_dir), sets or {})
    raw, secret = to_engine_config(config)
    spec = load_spec(raw, project=project_name(project_dir), stack=stack, secret_keys=secret)
    rendering = render_stack(stack, set=sets, project_dir=project_dir, preview=True)
    return Plan(spec, rendering)


# ---- resource records --------------------------------------------------------------------------

def _label(r: RecordedResource) -> str:
    return f"{r.type} {r.name}"


def _path(r: RecordedResource, by_urn: Mapping[str, RecordedResource]) -> str:
    parts = [r.name]
    parent = by_urn.get(r.parent or "")
    while parent is not None:
        parts.append(parent.name)
        parent = by_urn.get(parent.parent or "")
    return "/".join(reversed(parts))


def records(rendering: Rendering) -> dict[str, dict[str, Any]]:
    """One JSON-ready record per resource, keyed by "type name", secrets redacted."""
    by_urn = {r.urn: r for r in rendering.resources}
    out: dict[str, dict[str, Any]] = {}
    for r in rendering.resources:
        parent = by_urn.get(r.parent or "")
        out[_label(r)] = {
            "type": r.type,
            "name": r.name,
            "parent": _label(parent) if parent else None,
            "path": _path(r, by_urn),
            "custom": r.custom,
            "options": {
                "protect": r.protect,
                "retain_on_delete": r.retain_on_delete,
                "delete_before_replace": r.delete_before_replace,
                "depends_on": sorted(_label(by_urn[u]) for u in r.depends_on if u in by_urn),
                "ignore_changes": list(r.ignore_changes),
            },
            "inputs": redact(r.inputs),
        }
    return dict(sorted(out.items(), key=lambda kv: (kv[1]["path"], kv[0])))


def is_stateful(record: Mapping[str, Any]) -> bool:
    """Our convention: every resource holding data is retained on delete; operators' clusters by kind."""
    return bool(record["options"]["retain_on_delete"]) or is_stateful_type(record["type"])


# ---- capacity ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PartRow:
    part: str
    low: int
    high: int
    resources: ResourceSpec


def part_rows(spec: PlatformSpec) -> list[PartRow]:
    def workload(w: WorkloadSpec) -> PartRow:
        high = w.autoscaling.max_replicas if w.autoscaling.enabled else w.instances
        low = w.autoscaling.min_replicas if w.autoscaling.enabled else w.instances
        return PartRow(w.name, low, high, w.resources)

    pg, mq, rd, ng = spec.postgres, spec.rabbitmq, spec.redis, spec.nginx
    return [
        PartRow("nginx", ng.instances, ng.instances, ng.resources),
        *(workload(w) for w in spec.workloads),
        PartRow("postgres", 1 + pg.replicas, 1 + pg.replicas, pg.resources),
        PartRow("rabbitmq", mq.nodes, mq.nodes, mq.resources),
        PartRow("redis", rd.nodes, rd.nodes, rd.resources),
    ]


def _cpu(millis: int) -> str:
    return f"{millis / 1000:g}"


def _mem(mib: int) -> str:
    return f"{mib / 1024:g} GiB" if mib >= 1024 else f"{mib} MiB"


def _count(row: PartRow) -> str:
    return str(row.low) if row.low == row.high else f"{row.low}-{row.high}"


def capacity_table(spec: PlatformSpec) -> tuple[list[str], list[list[str]]]:
    """Per part: instances, per-instance and total CPU and memory (requests / limits); totals at the most."""
    header = ["part", "instances", "CPU per instance (req / limit)", "memory per instance (req / limit)",
              "CPU total", "memory total"]
    rows, totals = [], [0, 0, 0, 0]
    for row in part_rows(spec):
        r = row.resources
        sums = [row.high * r.requests.cpu_millis, row.high * r.limits.cpu_millis,
                row.high * r.requests.memory_mib, row.high * r.limits.memory_mib]
        totals = [a + b for a, b in zip(totals, sums, strict=True)]
        rows.append([row.part, _count(row),
                     f"{_cpu(r.requests.cpu_millis)} / {_cpu(r.limits.cpu_millis)}",
                     f"{_mem(r.requests.memory_mib)} / {_mem(r.limits.memory_mib)}",
                     f"{_cpu(sums[0])} / {_cpu(sums[1])}", f"{_mem(sums[2])} / {_mem(sums[3])}"])
    rows.append(["total", "", "", "",
                 f"{_cpu(totals[0])} / {_cpu(totals[1])}", f"{_mem(totals[2])} / {_mem(totals[3])}"])
    return header, rows


# ---- diff ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Change:
    key: str
    kind: str          # create | update | replace | delete
    stateful: bool
    fields: tuple[str, ...]

    @property
    def dangerous(self) -> bool:
        return self.stateful and self.kind in ("replace", "delete")


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else k))
        return out or {prefix: {}}
    return {prefix: value}


@cache
def _docker_replacing_properties() -> frozenset[str]:
    """Docker inputs whose change makes the provider replace the resource (from its own schema)."""
    schema_path = PROJECT_DIR.parent / "shared" / "schemas" / "pulumi-docker" / "schema.json"
    if not schema_path.exists():
        return frozenset()
    schema = json.loads(schema_path.read_text())
    return frozenset(f"{token}.{prop}" for token, res in schema["resources"].items()
                     for prop, info in res.get("inputProperties", {}).items() if info.get("willReplaceOnChanges"))


def _replaces(record: Mapping[str, Any], fields: Sequence[str]) -> bool:
    top = {f.split(".", 1)[0].split("[", 1)[0] for f in fields}
    if record["type"].startswith("docker:"):
        replacing = _docker_replacing_properties()
        if not replacing:  # no schema here: assume the worst for what holds data
            return is_stateful(record)
        return any(f"{record['type']}.{t}" in replacing for t in top)
    kind = record["inputs"].get("kind", "")
    if "metadata.name" in fields or "metadata.namespace" in fields:
        return True
    return any(f == imm or f.startswith(imm + ".") for imm in K8S_IMMUTABLE.get(kind, ()) for f in fields)


def diff(before: Mapping[str, Mapping[str, Any]], after: Mapping[str, Mapping[str, Any]]) -> list[Change]:
    changes: list[Change] = []
    for key in sorted(after.keys() - before.keys()):
        changes.append(Change(key, "create", is_stateful(after[key]), ()))
    for key in sorted(before.keys() - after.keys()):
        changes.append(Change(key, "delete", is_stateful(before[key]), ()))
    for key in sorted(before.keys() & after.keys()):
        a, b = _flatten(before[key]["inputs"]), _flatten(after[key]["inputs"])
        # The engine does not diff what the resource's ignore_changes lists.
        ignored = tuple(after[key]["options"]["ignore_changes"])
        fields = tuple(sorted(f for f in a.keys() | b.keys() if a.get(f) != b.get(f)
                              and not any(f == i or f.startswith(i + ".") for i in ignored)))
        options = before[key]["options"] != after[key]["options"]
        if not fields and not options:
            continue
        kind = "replace" if fields and _replaces(after[key], fields) else "update"
        changes.append(Change(key, kind, is_stateful(before[key]) or is_stateful(after[key]),
                              fields + (("(options)",) if options else ())))
    # Dangerous first (stateful replaced or deleted), then the rest in a stable order.
    return sorted(changes, key=lambda c: (not c.dangerous, ("delete", "replace", "update", "create").index(c.kind),
                                          c.key))


def format_diff(changes: Sequence[Change], markdown: bool) -> str:
    if not changes:
        return "No changes."
    counts = {k: sum(1 for c in changes if c.kind == k) for k in ("create", "update", "replace", "delete")}
    lines = [", ".join(f"{n} to {k}" for k, n in counts.items() if n)]
    for c in changes:
        detail = f" ({', '.join(c.fields[:6])}{', ...' if len(c.fields) > 6 else ''})" if c.fields else ""
        text = f"{c.kind.upper()} {c.key}{detail}"
        if c.dangerous:
            text = f"**STATEFUL {text}**" if markdown else f"!! STATEFUL {text}"
        lines.append(f"- {text}")
    return "\n".join(lines)


def records_at_ref(ref: str, stack: str) -> dict[str, dict[str, Any]]:
    """Render the stack as a git ref has it, code and stack file (exported to a temp dir). What-if
    --set values apply to this checkout only: the ref is the baseline they are compared with."""
    with tempfile.TemporaryDirectory(prefix="banyan-plan-") as tmp:
        archive = subprocess.run(["git", "-C", str(PROJECT_DIR), "archive", "--format=tar", ref],
                                 capture_output=True, check=False)
        if archive.returncode != 0:
            raise SystemExit(f"cannot read git ref {ref!r}: {archive.stderr.decode().strip()}")
        tar_path = Path(tmp) / "ref.tar"
        tar_path.write_bytes(archive.stdout)
        root = Path(tmp) / "tree"
        with tarfile.open(tar_path) as tar:
            tar.extractall(root, filter="data")
        # The plan moved from infra/ to tooling/ (the layout of issue 10); older refs still render.
        module = next((m for m in ("tooling.plan", "infra.plan")
                       if (root / m.replace(".", "/")).with_suffix(".py").exists()), None)
        if module is None:
            raise SystemExit(f"{ref} predates the plan command; diff against a later ref")
        argv = [sys.executable, "-m", module, stack, "--format", "json"]
        env = {**os.environ, "PYTHONPATH": str(root)}
        done = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"rendering {stack} at {ref} failed:\n{done.stdout}{done.stderr}")
        data: dict[str, dict[str, Any]] = json.loads(done.stdout)["resources"]
        return data


# ---- views ---------------------------------------------------------------------------------------

def _tree_lines(recs: Mapping[str, Mapping[str, Any]]) -> list[str]:
    children: dict[str | None, list[str]] = {}
    for key, rec in recs.items():
        children.setdefault(rec["parent"], []).append(key)
    lines: list[str] = []

    def walk(key: str, depth: int) -> None:
        rec = recs[key]
        marks = [m for m, on in (("protected", rec["options"]["protect"]),
                                 ("retained", rec["options"]["retain_on_delete"])) if on]
        suffix = f"  [{', '.join(marks)}]" if marks else ""
        lines.append(f"{'  ' * depth}{rec['type']}  {rec['name']}{suffix}")
        for child in children.get(key, []):
            walk(child, depth + 1)

    for root in children.get(None, []):
        walk(root, 0)
    return lines


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool) -> list[str]:
    if markdown:
        return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
                *("| " + " | ".join(r) + " |" for r in rows)]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*header), fmt.format(*("-" * w for w in widths)), *(fmt.format(*r) for r in rows)]
    return [line.rstrip() for line in lines]


def summary_line(plan: Plan) -> str:
    spec, recs = plan.spec, plan.rendering.resources
    custom = [r for r in recs if r.custom]
    stateful = sum(1 for r in records(plan.rendering).values() if is_stateful(r))
    return (f"stack {spec.stack}: target {spec.target}, tier {spec.tier}; {len(custom)} resources "
            f"in {len(recs) - len(custom)} components; {stateful} stateful"
            f"{', protected' if spec.protect else ''}")


def render_text(plan: Plan, markdown: bool = False, diff_text: str | None = None) -> str:
    spec = plan.spec
    header, rows = capacity_table(spec)
    budget = spec.budget
    def h(title: str) -> str:
        return f"### {title}" if markdown else f"== {title}"

    out = [f"**banyan plan** {summary_line(plan)}" if markdown else summary_line(plan), ""]
    if diff_text is not None:
        out += [h("changes"), diff_text, ""]
    out += [h("capacity" + (" (Kubernetes: autoscaler min-max; totals at max)" if spec.target == "kubernetes"
                            else "")), *_table(header, rows, markdown), ""]
    out += [h("connection budget"),
            f"{budget.arithmetic()}: {'fits' if budget.fits else 'DOES NOT FIT'}"
            f" (max_connections {'derived' if spec.postgres.max_connections_derived else 'set in the stack'})",
            ""]
    out += [h("warnings"), *([f"- {w}" for w in spec.warnings] or ["none"]), ""]
    tree = _tree_lines(records(plan.rendering))
    if markdown:
        body = "\n".join(["<details><summary>resources</summary>", "", "```", *tree, "```", "</details>"])
        head = "\n".join(out)
        if len(head) + len(body) > MARKDOWN_LIMIT:
            keep = tree[: max(10, len(tree) * (MARKDOWN_LIMIT - len(head)) // max(1, len(body)) - 10)]
            body = "\n".join(["<details><summary>resources (cut to fit one comment)</summary>", "", "```",
                              *keep, f"... {len(tree) - len(keep)} more", "```", "</details>"])
        return head + "\n" + body + "\n"
    return "\n".join([*out, h("resources"), *tree]) + "\n"


def render_json(plan: Plan) -> str:
    spec = plan.spec
    data = {
        "stack": spec.stack, "target": spec.target, "tier": spec.tier, "protect": spec.protect,
        "parts": [{"part": r.part, "min": r.low, "max": r.high,
                   "per_instance": r.resources.model_dump()} for r in part_rows(spec)],
        "connection_budget": {"clients": [ln.model_dump() for ln in spec.budget.lines], "total": spec.budget.total,
                              "max_connections": spec.budget.max_connections, "fits": spec.budget.fits,
                              "arithmetic": spec.budget.arithmetic()},
        "warnings": list(spec.warnings),
        "resources": records(plan.rendering),
    }
    return json.dumps(data, indent=2, sort_keys=False) + "\n"


def render_snapshot(rendering: Rendering) -> str:
    """Every resource's type, name, parent, options and inputs; deterministic, secrets redacted."""
    lines = [f"# banyan golden snapshot of stack {rendering.stack} (python -m tooling.plan {rendering.stack} "
             "--format snapshot); unknown until deployed: <unknown>, secrets: [secret]"]
    for key, rec in records(rendering).items():
        lines += ["", f"## {key}", f"parent: {rec['parent']}"]
        opts = {k: v for k, v in rec["options"].items() if v}
        if opts:
            lines.append(f"options: {json.dumps(opts, sort_keys=True)}")
        for path, value in sorted(_flatten(rec["inputs"]).items()):
            if path:
                lines.append(f"{path} = {json.dumps(value, sort_keys=True)}")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tooling.plan", description=__doc__.split("\n\n")[0])
    parser.add_argument("stack", help="stack name: Pulumi.<stack>.yaml")
    parser.add_argument("--format", choices=("text", "markdown", "json", "snapshot"), default="text")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="what-if override, e.g. tier=large or postgres.replicas=3 (repeatable)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--diff-against", metavar="GIT_REF", help="also show what changes against a git ref")
    group.add_argument("--diff-stack", metavar="STACK", help="also show the difference to another stack")
    args = parser.parse_args(argv)
    try:
        sets = dict(item.split("=", 1) for item in args.set)
    except ValueError:
        parser.error("--set takes KEY=VALUE")
    try:
        plan = build_plan(args.stack, sets)
        diff_text = None
        if args.diff_against or args.diff_stack:
            before = (records_at_ref(args.diff_against, args.stack) if args.diff_against
                      else records(build_plan(args.diff_stack).rendering))
            diff_text = format_diff(diff(before, records(plan.rendering)), args.format == "markdown")
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except NoStackFileError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.format == "json":
        sys.stdout.write(render_json(plan))
    elif args.format == "snapshot":
        sys.stdout.write(render_snapshot(plan.rendering))
    else:
        sys.stdout.write(render_text(plan, markdown=args.format == "markdown", diff_text=diff_text))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
