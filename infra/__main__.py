"""Entry point Pulumi runs (`main: infra/`): the engine starts it with infra/ as the working directory."""

import sys
from pathlib import Path

# Pulumi puts infra/ on sys.path, not the project root that holds the `infra` and `components` packages.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from infra.program import main  # noqa: E402

main()
