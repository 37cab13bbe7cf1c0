"""Entry point Pulumi runs (`main: infra/`): the engine starts it with infra/ as the working directory."""

import sys
from pathlib import Path

from pulumi.runtime import settings

# Pulumi puts infra/ on sys.path, not the project root that holds the `infra` and `components` packages.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from infra.program import main  # noqa: E402

if settings.get_monitor() is None:
    # Started by hand (`python infra`), not by the engine: there is no stack, no config and nowhere to register.
    print("banyan: this is the Pulumi program of the project; the engine runs it: `./scripts/up dev` (pulumi up), "
          "`pulumi preview --stack dev`, or offline: `.venv/bin/python -m tooling.plan dev`", file=sys.stderr)
    sys.exit(2)

main()
