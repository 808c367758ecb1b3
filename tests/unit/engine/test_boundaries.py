"""The engine stays pure: no web stack in the worker, no PyAV in the contract the web side imports."""

from __future__ import annotations

import subprocess
import sys


def _modules_after(statement: str) -> set[str]:
    code = f"{statement}; import sys; print(' '.join(sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {name.split(".")[0] for name in done.stdout.split()}


def test_engine_imports_neither_litestar_nor_backend() -> None:
    loaded = _modules_after("import gpu_worker.engine, gpu_worker.encoders.cpu")
    assert not loaded & {"litestar", "backend", "sqlalchemy", "redis"}


def test_contract_does_not_import_pyav() -> None:
    assert "av" not in _modules_after("import gpu_worker.contract")
