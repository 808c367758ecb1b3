"""What the deployment files (compose.gpu.yml, deploy/farm.env.example, Dockerfile) are checked
against: the real `vexport` CLI and the variables the settings code really reads."""

from __future__ import annotations

import ast
from collections.abc import Sequence
from pathlib import Path

from backend.__main__ import main

ROOT = Path(__file__).resolve().parents[3]
SETTINGS_MODULES = (ROOT / "gpu_worker" / "settings.py", ROOT / "backend" / "lib" / "settings.py")


def parse_vexport(args: Sequence[str]) -> tuple[str, dict[str, object]]:
    """Parse `vexport ARGS` as click would run it (without running it): the subcommand's name and
    its parameters; an unknown subcommand, option or bad value raises click's UsageError."""
    with main.make_context("vexport", [], resilient_parsing=True) as group:
        name, command, rest = main.resolve_command(group, list(args))
        assert name is not None
        assert command is not None
        with command.make_context(name, rest, parent=group) as ctx:
            return name, dict(ctx.params)


def env_names_read() -> set[str]:
    """Every variable name the settings read: `env.get("NAME", ...)` and `env["NAME"]`."""
    names: set[str] = set()
    for path in SETTINGS_MODULES:
        for node in ast.walk(ast.parse(path.read_text())):
            key: ast.expr | None = None
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
                key = node.args[0] if node.func.attr == "get" else None
            elif isinstance(node, ast.Subscript):
                key = node.slice
            if isinstance(key, ast.Constant) and isinstance(key.value, str) and key.value.isupper():
                names.add(key.value)
    return names


def env_file_names(path: Path) -> list[str]:
    """The names a compose env file sets, in order (comments and blank lines skipped)."""
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line.partition("=")[0] for line in lines if line and not line.startswith("#")]
