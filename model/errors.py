"""Config problems and the one error that stops a stack before any resource is registered."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with the stack config: where, what was given, what is allowed."""

    key: str
    value: Any
    allowed: str
    missing: bool = False

    def render(self, secret_keys: Iterable[str] = ()) -> str:
        if self.missing:
            return f"{self.key}: not set; {self.allowed}"
        top = self.key.split(".", 1)[0].split("[", 1)[0]
        shown = "[secret]" if top in set(secret_keys) else _show(self.value)
        return f"{self.key}: got {shown}; {self.allowed}"


def _show(value: Any) -> str:
    try:
        text = json.dumps(value, sort_keys=True, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


class ConfigError(pulumi.RunError):
    """Raised with every problem at once; the Python language host prints a RunError without a traceback."""

    def __init__(self, problems: Sequence[ConfigProblem], secret_keys: Iterable[str] = ()) -> None:
        self.problems = tuple(problems)
        secret = tuple(secret_keys)
        lines = [f"  - {p.render(secret)}" for p in self.problems]
        count = len(self.problems)
        header = f"invalid stack configuration ({count} problem{'s' if count != 1 else ''}); nothing was deployed:"
        super().__init__("\n".join([header, *lines]))
