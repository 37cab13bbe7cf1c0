"""The stack program Pulumi runs (`main: infra/`): `__main__.py` starts it; `program.py` reads the stack
config, resolves it with `model` and builds the platform from `components`."""
