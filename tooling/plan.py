"""The offline plan: what a stack would deploy, with no Pulumi CLI, backend, Docker or cluster.

    python -m tooling.plan dev                         # readable terminal view
    python -m tooling.plan dev --format markdown       # for a pull-request comment (summary first)
    python -m tooling.plan dev --format json
    python -m tooling.plan dev --set tier=large        # what-if, repeatable
    python -m tooling.plan dev --diff-against main     # what this checkout changes against a git ref
    python -m tooling.plan prod --diff-stack dev       # two stacks side by side
    python -m tooling.plan dev --format snapshot       # the golden snapshot (tests/snapshots/<stack>.txt)

The stack is rendered by the real program under Pulumi's mock engine in preview mode, as a preview of the
deployed stack sees it: generated secrets exist (stand-ins), what only a provider can know (ids) is shown as
<unknown>; secrets are never printed, only their place and a fingerprint of the stand-in. A diff shows each
changed value old -> new (a Docker env variable, a pod's container by name, a config file's lines), the
option that changed, why a replacement replaces, and the capacity before and after.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pulumi

from infra.program import load_spec
from model import capacity
from model.errors import ConfigError
from model.spec import PlatformSpec, ResourceSpec, WorkloadSpec
from model.stateful import is_stateful_type
from testkit.render import (
    PROJECT_DIR,
    UNKNOWN,
    NoStackFileError,
    PreviewMocks,
    RecordedResource,
    Rendering,
    Secret,
    apply_sets,
    mock_secret_value,
    project_name,
    read_stack_file,
    render_program,
    to_engine_config,
)
from tooling import replace_fields

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
# Docker's env list ("NAME=value" items): shown and compared per variable.
_ENV_LISTS = ("envs",)
_ENV_ITEM = re.compile(r"^([A-Za-z_][A-Za-z0-9_.-]*)=(.*)$", re.S)
# Keys that name the items of a list of objects (containers, env entries, labels, uploads, mounts, ports).
_ITEM_KEYS = ("name", "label", "file", "containerPath", "mountPath", "key", "internal", "containerPort")


def natural_key(text: str) -> list[Any]:
    """gateway-2 before gateway-10: digit runs compare as numbers."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _fingerprint(value: Any) -> str:
    """Eight hex digits of the value as rendered here. Generated passwords and `secure:` config values are
    stand-ins under the plan's mocks (never the real ones), so this shows *that* a secret changed (a host, a
    user, a database name inside it) and reveals nothing."""
    plain = json.dumps(_unwrap_all(value), sort_keys=True, default=str)
    return hashlib.sha256(plain.encode()).hexdigest()[:8]


def _unwrap_all(value: Any) -> Any:
    if isinstance(value, Secret):
        return _unwrap_all(value.value)
    if isinstance(value, dict):
        return {k: _unwrap_all(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap_all(v) for v in value]
    return value


def _has_unknown(value: Any) -> bool:
    if value is UNKNOWN:
        return True
    if isinstance(value, Secret):
        return _has_unknown(value.value)
    if isinstance(value, dict):
        return any(_has_unknown(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_unknown(v) for v in value)
    return False


def _redact_secret(value: Any, key: str) -> Any:
    """A secret for display: its structure (names, keys) stays, every value is [secret #fingerprint]."""
    if isinstance(value, Secret):
        return _redact_secret(value.value, key)
    if isinstance(value, dict):
        return {k: _redact_secret(v, k) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [_redact_secret(v, key) for v in value]
    if _has_unknown(value):
        return REDACTED
    if key in _ENV_LISTS and isinstance(value, str) and (item := _ENV_ITEM.match(value)):
        return f"{item.group(1)}=[secret #{_fingerprint(item.group(2))}]"
    return f"[secret #{_fingerprint(value)}]"


def redact(value: Any, key: str = "") -> Any:
    """Inputs for display: secrets as [secret #fingerprint] (a Docker env item as NAME=[secret #...]; [secret]
    when not even a stand-in is known), unknowns as <unknown>."""
    if isinstance(value, Secret):
        return _redact_secret(value.value, key)
    if value is UNKNOWN:
        return SHOWN_UNKNOWN
    if isinstance(value, dict):
        return {k: redact(v, k) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [redact(v, key) for v in value]
    return value


def is_secret_shown(value: Any) -> bool:
    return isinstance(value, str) and (value == REDACTED or value.startswith("[secret #"))


@dataclass(frozen=True)
class Plan:
    spec: PlatformSpec
    rendering: Rendering


class PlanMocks(PreviewMocks):
    """`pulumi preview` of a deployed stack: its generated secrets exist (stand-in values, never shown; their
    fingerprints tell a changed secret from an unchanged one), while ids and whatever else a provider computes
    stay unknown."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        resource_id, state = super().new_resource(args)
        if args.typ.startswith("random:index/random"):
            state.setdefault("result", mock_secret_value(args.name))
        return resource_id, state


def render_for_review(stack: str, sets: Mapping[str, Any] | None = None,
                      project_dir: Path = PROJECT_DIR) -> Rendering:
    """The stack as the plan and the golden snapshots show it (see PlanMocks)."""
    from infra.program import main as program

    config = apply_sets(read_stack_file(stack, project_dir), sets or {})
    raw, secret = to_engine_config(config)
    return render_program(program, raw, project=project_name(project_dir), stack=stack, secret_keys=secret,
                          preview=True, mocks=PlanMocks())


def build_plan(stack: str, sets: Mapping[str, Any] | None = None, project_dir: Path = PROJECT_DIR) -> Plan:
    config = apply_sets(read_stack_file(stack, project_dir), sets or {})
    raw, secret = to_engine_config(config)
    spec = load_spec(raw, project=project_name(project_dir), stack=stack, secret_keys=secret)
    return Plan(spec, render_for_review(stack, sets, project_dir))


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
                "replace_on_changes": list(r.replace_on_changes),
            },
            "inputs": redact(r.inputs),
        }
    return dict(sorted(out.items(), key=lambda kv: (natural_key(kv[1]["path"]), natural_key(kv[0]))))


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


# ---- flattening: one line per value -----------------------------------------------------------------

def _item_ids(prefix: str, items: list[Any]) -> tuple[list[str], str | None] | None:
    """Names for the items of a list, where its items have them (env variables, containers, labels, uploads),
    and the key that holds the name (None: an env item's own name, or a position)."""
    last = re.split(r"[.\]]", prefix)[-1] if prefix else ""
    if last in _ENV_LISTS and all(isinstance(i, str) and _ENV_ITEM.match(i) for i in items):
        names = [str(_ENV_ITEM.match(i).group(1)) for i in items]  # type: ignore[union-attr]
        return (names, None) if len(set(names)) == len(names) else None
    if all(isinstance(i, dict) for i in items):
        for key in _ITEM_KEYS:
            ids = [i.get(key) for i in items]
            if all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in ids) and len(set(ids)) == len(ids):
                return [str(v) for v in ids], key
        return [str(n) for n in range(len(items))], None
    return None


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Inputs as {path: value}: objects by key, env lists by variable (`envs[PORT]`), lists of objects by their
    name (`spec.template.spec.containers[api].env[PORT].value`) or index; lists of plain values stay whole."""
    if isinstance(value, dict):
        if not value:
            return {prefix: {}} if prefix else {}
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else k))
        return out
    if isinstance(value, list) and value:
        named = _item_ids(prefix, value)
        if named is not None:
            ids, id_key = named
            out = {}
            for ident, item in zip(ids, value, strict=True):
                sub = f"{prefix}[{ident}]"
                if isinstance(item, str) and (env := _ENV_ITEM.match(item)):
                    out[sub] = env.group(2)
                else:
                    # The name is in the brackets; the rest of the item on its own lines.
                    rest = {k: v for k, v in item.items() if k != id_key} if id_key else item
                    out.update(flatten(rest, sub) if rest else {sub: {}})
            return out
    return {prefix: value}


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    return flatten(value, prefix)


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith((prefix + ".", prefix + "["))


# ---- diff ------------------------------------------------------------------------------------------

_MISSING = object()


@dataclass(frozen=True)
class FieldChange:
    path: str
    old: Any    # _MISSING when added
    new: Any    # _MISSING when removed


@dataclass(frozen=True)
class Change:
    key: str
    kind: str          # create | update | replace | delete
    stateful: bool
    fields: tuple[str, ...]
    details: tuple[FieldChange, ...] = ()
    replaced_for: tuple[str, ...] = ()   # the fields that make it a replacement

    @property
    def dangerous(self) -> bool:
        return self.stateful and self.kind in ("replace", "delete")


@cache
def _docker_replacing_properties() -> frozenset[str]:
    """Docker inputs whose change makes the provider replace the resource: derived from its schema at build time
    (tooling/replace_fields.json), so the plan needs neither ../shared nor the Pulumi CLI."""
    return frozenset(f"{token}.{prop}" for token, props in replace_fields.load().items() for prop in props)


def _top(path: str) -> str:
    return path.split(".", 1)[0].split("[", 1)[0]


def _replacing_fields(record: Mapping[str, Any], fields: Sequence[str]) -> tuple[str, ...]:
    """Why a change replaces the resource: the properties (or option paths) among `fields` that force it."""
    forced = [opt for opt in record["options"].get("replace_on_changes", ())
              if any(opt == "*" or _under(f, opt) for f in fields)]
    if record["type"].startswith("docker:"):
        replacing = _docker_replacing_properties()
        if not replacing:  # no data file: assume the worst for what holds data
            return tuple(dict.fromkeys(_top(f) for f in fields)) if is_stateful(record) else tuple(forced)
        forced += [_top(f) for f in fields if f"{record['type']}.{_top(f)}" in replacing]
    elif record["type"].startswith("kubernetes:"):
        kind = record["inputs"].get("kind", "")
        forced += [f for f in fields if f in ("metadata.name", "metadata.namespace")]
        forced += [imm for imm in K8S_IMMUTABLE.get(kind, ()) if any(_under(f, imm) for f in fields)]
    return tuple(dict.fromkeys(forced))


def _replaces(record: Mapping[str, Any], fields: Sequence[str]) -> bool:
    return bool(_replacing_fields(record, fields))


def _same(old: Any, new: Any) -> bool:
    if old == new:
        return True
    # A secret nobody could know on one side ([secret]), or a value the base could not know: no change to show.
    if (old == REDACTED and is_secret_shown(new)) or (new == REDACTED and is_secret_shown(old)):
        return True
    return old == SHOWN_UNKNOWN and new is not _MISSING


def _comparable(a: dict[str, Any], b: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """Drop what one side shows as one whole secret and the other per item (a base rendered before env went
    per variable): it cannot be compared."""
    opaque = [p for p in a.keys() - b.keys() if a[p] == REDACTED and any(_under(q, p) for q in b)]
    opaque += [p for p in b.keys() - a.keys() if b[p] == REDACTED and any(_under(q, p) for q in a)]
    if not opaque:
        return a, b, []

    def keep(d: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in d.items() if not any(_under(k, p) for p in opaque)}

    return keep(a), keep(b), sorted(opaque)


def _option_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[FieldChange]:
    # Only options both sides record (a base from before an option was recorded shows no change for it).
    return [FieldChange(f"options.{k}", before[k], after[k]) for k in sorted(before.keys() & after.keys())
            if before[k] != after[k]]


@dataclass
class DiffResult:
    changes: list[Change]
    not_comparable: dict[str, list[str]] = field(default_factory=dict)


def diff_records(before: Mapping[str, Mapping[str, Any]], after: Mapping[str, Mapping[str, Any]]) -> DiffResult:
    result = DiffResult([])
    changes = result.changes
    for key in after.keys() - before.keys():
        changes.append(Change(key, "create", is_stateful(after[key]), ()))
    for key in before.keys() - after.keys():
        changes.append(Change(key, "delete", is_stateful(before[key]), ()))
    for key in before.keys() & after.keys():
        a, b, opaque = _comparable(flatten(before[key]["inputs"]), flatten(after[key]["inputs"]))
        if opaque:
            result.not_comparable[key] = opaque
        # The engine does not diff what the resource's ignore_changes lists.
        ignored = tuple(after[key]["options"]["ignore_changes"])
        details = [FieldChange(f, a.get(f, _MISSING), b.get(f, _MISSING))
                   for f in sorted(a.keys() | b.keys(), key=natural_key)
                   if not _same(a.get(f, _MISSING), b.get(f, _MISSING)) and not any(_under(f, i) for i in ignored)]
        fields = tuple(d.path for d in details)
        options = _option_changes(before[key]["options"], after[key]["options"])
        if not details and not options:
            continue
        replaced_for = _replacing_fields(after[key], fields) if fields else ()
        changes.append(Change(key, "replace" if replaced_for else "update",
                              is_stateful(before[key]) or is_stateful(after[key]),
                              fields + tuple(o.path for o in options), tuple(details + options), replaced_for))
    # Dangerous first (stateful replaced or deleted), then the rest in a stable order, numbered names in number
    # order (gateway-2 before gateway-10).
    changes.sort(key=lambda c: (not c.dangerous, ("delete", "replace", "update", "create").index(c.kind),
                                natural_key(c.key)))
    return result


def diff(before: Mapping[str, Mapping[str, Any]], after: Mapping[str, Mapping[str, Any]]) -> list[Change]:
    return diff_records(before, after).changes


# ---- showing values ------------------------------------------------------------------------------------

_INLINE = 200        # longest value shown on the line
_TEXT_LINES = 16     # changed lines shown of a multi-line value (a config file)
_DETAILS = 24        # field changes shown per resource


def _show(value: Any) -> str:
    if value is _MISSING:
        return "(none)"
    if isinstance(value, str) and (value == SHOWN_UNKNOWN or is_secret_shown(value)):
        return value
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= _INLINE else f"{text[:_INLINE - 20]}... ({len(text)} chars)"


def _detail_lines(d: FieldChange) -> list[str]:
    old, new = d.old, d.new
    if isinstance(old, str) and isinstance(new, str) and ("\n" in old or "\n" in new):
        delta = [line for line in difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=0)
                 if not line.startswith(("---", "+++"))]
        shown = delta[:_TEXT_LINES] + ([f"  ... {len(delta) - _TEXT_LINES} more lines"]
                                       if len(delta) > _TEXT_LINES else [])
        return [f"{d.path}: text changed", *(f"    {line[:_INLINE * 2]}" for line in shown)]
    if (d.path.startswith("options.") and isinstance(old, list) and isinstance(new, list)
            and all(isinstance(x, str) for x in old + new)):
        added, removed = sorted(set(new) - set(old), key=natural_key), sorted(set(old) - set(new), key=natural_key)
        # depends_on holds "type name" labels: the names say enough.
        parts = [*(f"+{x.rsplit(' ', 1)[-1]}" for x in added), *(f"-{x.rsplit(' ', 1)[-1]}" for x in removed)]
        more = f", ... {len(parts) - 12} more" if len(parts) > 12 else ""
        return [f"{d.path}: {', '.join(parts[:12]) + more if parts else _show(old) + ' -> ' + _show(new)}"]
    if is_secret_shown(old) and is_secret_shown(new):
        return [f"{d.path}: {REDACTED} (changed)"]
    return [f"{d.path}: {_show(old)} -> {_show(new)}"]


def change_lines(c: Change, markdown: bool) -> list[str]:
    """One change: its headline, then each changed field with the old and the new value."""
    for_what = f" (replaced for {', '.join(c.replaced_for[:4])}{', ...' if len(c.replaced_for) > 4 else ''})" \
        if c.replaced_for else ""
    text = f"{c.kind.upper()} {c.key}{for_what}"
    if c.dangerous:
        text = f"**STATEFUL {text}**" if markdown else f"!! STATEFUL {text}"
    lines = [f"- {text}"]
    details = [line for d in c.details[:_DETAILS] for line in _detail_lines(d)]
    if len(c.details) > _DETAILS:
        details.append(f"... {len(c.details) - _DETAILS} more fields")
    if details:
        if markdown:
            lines += ["  ```", *(f"  {line.replace('```', chr(39) * 3)}" for line in details), "  ```"]
        else:
            lines += [f"    {line}" for line in details]
    return lines


def format_diff(changes: Sequence[Change], markdown: bool, limit: int | None = None,
                not_comparable: Mapping[str, Sequence[str]] | None = None) -> str:
    """The changes, dangerous first; within `limit` characters, dropping the details of the least dangerous
    first and then whole lines (each cut said)."""
    if not changes:
        return "No changes." + _not_comparable_note(not_comparable)
    counts = {k: sum(1 for c in changes if c.kind == k) for k in ("create", "update", "replace", "delete")}
    head = ", ".join(f"{n} to {k}" for k, n in counts.items() if n)
    dangerous = sum(1 for c in changes if c.dangerous)
    if dangerous:
        head += f"; {dangerous} stateful {'resource' if dangerous == 1 else 'resources'} replaced or deleted, first"
    blocks = [change_lines(c, markdown) for c in changes]
    note = _not_comparable_note(not_comparable)

    def assemble(parts: list[list[str]]) -> str:
        return "\n".join([head, *(line for block in parts for line in block)]) + note

    text = assemble(blocks)
    if limit is None or len(text) <= limit:
        return text
    # Over budget: headlines only, from the last change up; then drop headlines from the end.
    for i in range(len(blocks) - 1, -1, -1):
        blocks[i] = blocks[i][:1]
        if len(assemble(blocks)) <= limit - 200:
            break
    shown = len(blocks)
    while shown > 1 and len(assemble(blocks[:shown])) > limit - 200:
        shown -= 1
    cut = (f"\n... {len(blocks) - shown} more changes not shown" if shown < len(blocks) else "") + \
        "\n_(cut to fit one comment: the whole diff is in the job summary, or run the plan locally)_"
    return assemble(blocks[:shown]) + cut


def _not_comparable_note(not_comparable: Mapping[str, Sequence[str]] | None) -> str:
    if not not_comparable:
        return ""
    fields = sorted({f for fs in not_comparable.values() for f in fs})
    return (f"\n({len(not_comparable)} resources: {', '.join(fields)} not compared: the base renders "
            "it as one secret)")


# ---- capacity before and after ------------------------------------------------------------------------

def capacity_totals(data: Mapping[str, Any]) -> dict[str, Any]:
    """From a plan's JSON (this one's or a base's): instances per part and totals at the most instances."""
    parts = data.get("parts") or []
    totals = {"instances": 0, "cpu_requests": 0, "cpu_limits": 0, "memory_requests": 0, "memory_limits": 0}
    per_part: dict[str, str] = {}
    for p in parts:
        high, low, res = int(p["max"]), int(p["min"]), p["per_instance"]
        per_part[p["part"]] = str(high) if high == low else f"{low}-{high}"
        totals["instances"] += high
        totals["cpu_requests"] += high * res["requests"]["cpu_millis"]
        totals["cpu_limits"] += high * res["limits"]["cpu_millis"]
        totals["memory_requests"] += high * res["requests"]["memory_mib"]
        totals["memory_limits"] += high * res["limits"]["memory_mib"]
    budget = data.get("connection_budget") or {}
    return {**totals, "parts": per_part, "connections": budget.get("total"),
            "max_connections": budget.get("max_connections")}


def capacity_delta_lines(before: Mapping[str, Any], after: Mapping[str, Any], markdown: bool) -> list[str]:
    """Before -> after: instances, CPU and memory (at the most instances), database connections."""
    b, a = capacity_totals(before), capacity_totals(after)
    if not b["parts"]:
        return ["(the base's plan has no capacity data)"]

    def row(name: str, old: str, new: str) -> list[str]:
        return [name, old, new, "" if old == new else "changed"]

    def conn(t: Mapping[str, Any]) -> str:
        return f"{t['connections']} of max_connections {t['max_connections']}" if t["max_connections"] else "-"

    rows = [row("instances (most)", str(b["instances"]), str(a["instances"])),
            row("CPU requests", _cpu(b["cpu_requests"]), _cpu(a["cpu_requests"])),
            row("CPU limits", _cpu(b["cpu_limits"]), _cpu(a["cpu_limits"])),
            row("memory requests", _mem(b["memory_requests"]), _mem(a["memory_requests"])),
            row("memory limits", _mem(b["memory_limits"]), _mem(a["memory_limits"])),
            row("database connections", conn(b), conn(a))]
    for part in sorted(b["parts"].keys() | a["parts"].keys(), key=natural_key):
        old, new = b["parts"].get(part, "-"), a["parts"].get(part, "-")
        if old != new:
            rows.append(row(f"{part} instances", old, new))
    return _table(["", "before", "after", ""], rows, markdown)


def queue_lines(spec: PlatformSpec) -> list[str]:
    """Per service: who owns its replicas and what a backlog of its queue_depth calls for. Kubernetes: KEDA acts on
    it (its queues, target, bounds; the budget counts its maximum) or the CPU/memory HPA does not see it. Docker: no
    autoscaler, so the same arithmetic is advice, with what the connection budget then needs."""
    lines = []
    for i, svc in enumerate(spec.services):
        advice = capacity.service_queue_advice(svc, spec.target)
        qs, key = svc.queue_scaling, f"banyan:services[{i}]"
        if spec.target != "kubernetes":
            line = f"- {advice.text} (set {key}.instances: {advice.wanted}; Docker has no autoscaler)"
            if advice.wanted > svc.instances and svc.database_client:
                total = spec.budget.total + (advice.wanted - svc.instances) * svc.pool.max
                needed = capacity.required_max_connections(total, spec.budget.limit_percent)
                current = spec.postgres.max_connections
                line += f"; the connection budget then counts {advice.wanted} x {svc.pool.max}: {total} connections, "
                if needed <= current:
                    line += f"within max_connections {current}"
                elif spec.postgres.max_connections_derived:
                    line += (f"so the derived max_connections rises from {current} to at least {needed} "
                             "(PostgreSQL restarts with it)")
                else:
                    line += f"above banyan:postgres.max_connections {current}: raise it to at least {needed}"
            lines.append(line)
        elif qs is None:
            lines.append(f"- {svc.name}: HorizontalPodAutoscaler on CPU and memory only; a backlog is not seen "
                         f"({key}.queue_scaling.enabled: true scales on it with KEDA)")
        else:
            queues = qs.pattern if qs.pattern is not None else ", ".join(qs.queues)
            budget = (f"the connection budget counts {svc.autoscaling.max_replicas} x {svc.pool.max}"
                      if svc.database_client else "no database connections")
            lines.append(f"- {svc.name}: KEDA ScaledObject on {queues} (ready + unacknowledged, summed), "
                         f"{qs.per_instance} messages per instance, CPU {svc.autoscaling.cpu_percent} % and memory "
                         f"{svc.autoscaling.memory_percent} % as further triggers, {svc.autoscaling.min_replicas}-"
                         f"{svc.autoscaling.max_replicas} replicas ({budget}), {qs.fallback_replicas} while the "
                         f"depth cannot be read; e.g. {advice.text}")
    return lines or ["no services"]


def monitoring_lines(spec: PlatformSpec) -> list[str]:
    """The monitoring part: where it runs, and every alert with its threshold, `for:` and the guide's action."""
    from components.monitoring import config as mc

    mon = spec.monitoring
    if not mon.enabled:
        return ["off (banyan:monitoring.enabled: true deploys it)"]
    where = (f"Prometheus and Alertmanager on the stack's network, UI on http://127.0.0.1:{mon.prometheus_port}; "
             f"scrape every {mon.scrape_interval_s} s, rules every {mon.evaluation_interval_s} s"
             if spec.target == "docker" else
             f"PodMonitors and a PrometheusRule for the Prometheus Operator ("
             f"{'installed: kube-prometheus-stack' if mon.install_operator else 'the cluster' + chr(39) + 's'}) "
             f"in {mon.namespace}; scrape every {mon.scrape_interval_s} s")
    if spec.target == "kubernetes":
        # The sidecars change the parts' pod templates: turning the part on or off restarts those pods.
        pods = "the Redis pods (redis-exporter)" + (" and the Nginx pods (mtail)" if mc.has_nginx_metrics(spec) else "")
        where += f"; sidecars in {pods}: turning monitoring on or off rolls them, one pod at a time"
    else:
        # The nodes' start script defines the exporter's own ACL user (components/redis/config.py MONITOR_USER).
        where += ("; the Redis nodes define the exporter's ACL user (banyan-monitor): turning monitoring on or off "
                  "replaces each node container once (roll a cluster with the preview's procedure)")
    lines = [where]
    for alert in mc.alerts(spec):
        lines.append(f"- {alert.name} ({alert.severity}, for {mc.SHIPPED.for_(alert.for_s)}): {alert.condition}"
                     f" -> {alert.action}")
    return lines


def plan_data(plan: Plan) -> dict[str, Any]:
    spec = plan.spec
    return {
        "stack": spec.stack, "target": spec.target, "tier": spec.tier, "protect": spec.protect,
        "parts": [{"part": r.part, "min": r.low, "max": r.high,
                   "per_instance": r.resources.model_dump()} for r in part_rows(spec)],
        "connection_budget": {"clients": [ln.model_dump() for ln in spec.budget.lines], "total": spec.budget.total,
                              "max_connections": spec.budget.max_connections, "fits": spec.budget.fits,
                              "arithmetic": spec.budget.arithmetic()},
        "queue_scaling": {s.name: None if s.queue_scaling is None else s.queue_scaling.model_dump()
                          for s in spec.services},
        "monitoring": {"enabled": spec.monitoring.enabled, "alerts": monitoring_lines(spec)[1:]},
        "warnings": list(spec.warnings),
        "resources": records(plan.rendering),
    }


@dataclass(frozen=True)
class Comparison:
    """This plan against a base (a git ref or another stack)."""

    base: str
    before: Mapping[str, Any]    # the base's plan_data (JSON)
    after: Mapping[str, Any]
    result: DiffResult


def compare(plan: Plan, before: Mapping[str, Any], base: str) -> Comparison:
    after = plan_data(plan)
    return Comparison(base, before, after, diff_records(before.get("resources", {}), after["resources"]))


def plan_at_ref(ref: str, stack: str) -> dict[str, Any]:
    """The plan's JSON of the stack as a git ref has it, code and stack file (exported to a temp dir). What-if
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
        data: dict[str, Any] = json.loads(done.stdout)
        return data


def records_at_ref(ref: str, stack: str) -> dict[str, dict[str, Any]]:
    resources: dict[str, dict[str, Any]] = plan_at_ref(ref, stack)["resources"]
    return resources


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


def render_text(plan: Plan, markdown: bool = False, diff_text: str | None = None,
                comparison: Comparison | None = None) -> str:
    """The plan; with a comparison, its changes first (dangerous first) and the capacity before and after.
    Markdown fits one pull-request comment: the resource list is cut first, then the changes' details."""
    spec = plan.spec
    header, rows = capacity_table(spec)
    budget = spec.budget

    def h(title: str) -> str:
        return f"### {title}" if markdown else f"== {title}"

    top = [f"**banyan plan** {summary_line(plan)}" if markdown else summary_line(plan), ""]
    rest: list[str] = []
    if comparison is not None:
        rest += [h(f"capacity before ({comparison.base}) and after"),
                 *capacity_delta_lines(comparison.before, comparison.after, markdown), ""]
    rest += [h("capacity" + (" (Kubernetes: autoscaler min-max; totals at max)" if spec.target == "kubernetes"
                             else "")), *_table(header, rows, markdown), ""]
    rest += [h("connection budget"),
             f"{budget.arithmetic()}: {'fits' if budget.fits else 'DOES NOT FIT'}"
             f" (max_connections {'derived' if spec.postgres.max_connections_derived else 'set in the stack'})",
             ""]
    rest += [h("queue depth (the guide: Queue Depth < 100 -> scale service handlers)"), *queue_lines(spec), ""]
    rest += [h("monitoring (banyan:monitoring)"), *monitoring_lines(spec), ""]
    rest += [h("warnings"), *([f"- {w}" for w in spec.warnings] or ["none"]), ""]
    tree = _tree_lines(records(plan.rendering))
    fixed = len("\n".join(top + rest)) + 400
    if comparison is not None:
        limit = max(2000, MARKDOWN_LIMIT - fixed - 3000) if markdown else None
        diff_text = format_diff(comparison.result.changes, markdown, limit, comparison.result.not_comparable)
    changes = [h(f"changes against {comparison.base}" if comparison else "changes"), diff_text, ""] \
        if diff_text is not None else []
    out = top + changes + rest
    if markdown:
        body = "\n".join(["<details><summary>resources</summary>", "", "```", *tree, "```", "</details>"])
        head = "\n".join(out)
        if len(head) + len(body) > MARKDOWN_LIMIT:
            room = max(0, MARKDOWN_LIMIT - len(head) - 300)
            keep: list[str] = []
            for line in tree:
                if sum(len(k) + 1 for k in keep) + len(line) + 1 > room:
                    break
                keep.append(line)
            body = "\n".join(["<details><summary>resources (cut to fit one comment)</summary>", "", "```",
                              *keep, f"... {len(tree) - len(keep)} more", "```", "</details>"])
        return head + "\n" + body + "\n"
    return "\n".join([*out, h("resources"), *tree]) + "\n"


def render_json(plan: Plan) -> str:
    return json.dumps(plan_data(plan), indent=2, sort_keys=False) + "\n"


def render_snapshot(rendering: Rendering) -> str:
    """Every resource's type, name, parent, options and inputs, one line per value (a Docker env variable, a
    container of a pod, a label); deterministic; secrets as [secret #fingerprint] (see _fingerprint)."""
    lines = [f"# banyan golden snapshot of stack {rendering.stack} (python -m tooling.plan {rendering.stack} "
             "--format snapshot); unknown until deployed: <unknown>, secrets: [secret #fingerprint of the "
             "stand-in value]"]
    for key, rec in records(rendering).items():
        lines += ["", f"## {key}", f"parent: {rec['parent']}"]
        lines += [f"options.{k} = {json.dumps(v, sort_keys=True)}" for k, v in sorted(rec["options"].items()) if v]
        for path, value in flatten(rec["inputs"]).items():
            if path:
                lines.append(f"{path} = {json.dumps(value, sort_keys=True)}")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tooling.plan", description=__doc__.split("\n\n")[0])
    parser.add_argument("stack", help="stack name: Pulumi.<stack>.yaml")
    parser.add_argument("--format", choices=("text", "markdown", "json", "snapshot"), default="text")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="what-if override, e.g. tier=large, postgres.replicas=3 or "
                             "services[0].env.LOG_LEVEL=debug (repeatable)")
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
        comparison = None
        if args.diff_against:
            comparison = compare(plan, plan_at_ref(args.diff_against, args.stack), args.diff_against)
        elif args.diff_stack:
            comparison = compare(plan, plan_data(build_plan(args.diff_stack)), f"stack {args.diff_stack}")
    except (ConfigError, NoStackFileError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.format == "json":
        sys.stdout.write(render_json(plan))
    elif args.format == "snapshot":
        sys.stdout.write(render_snapshot(plan.rendering))
    else:
        sys.stdout.write(render_text(plan, markdown=args.format == "markdown", comparison=comparison))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
