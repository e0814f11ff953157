"""The Flower App folder: a ``pyproject.toml`` naming organfed's ServerApp and ClientApp.

``flwr run`` bundles the folder (just this file) and the SuperLink and
SuperNodes import the apps from the installed organfed package. Flower refuses
run-config keys that the file does not declare, so every key of
:class:`ServerConfig` is declared here with its default.
"""

from __future__ import annotations

import json
from pathlib import Path

from organfed.server.config import ServerConfig
from organfed.shared.atomic import write_bytes_atomic
from organfed.shared.version import __version__

_REQUIRED = {"run-id": "", "work-dir": "", "base-model": "", "key-dir": "", "trust-dir": ""}


def default_run_config() -> dict[str, object]:
    """Every run-config key with its default (required keys empty)."""
    probe = ServerConfig(run_id="x", work_dir=Path("x"), base_model=Path("x"), key_dir=Path("x"), trust_dir=Path("x"))
    return {**probe.to_run_config(), **_REQUIRED}


def write_flower_app(out: Path) -> Path:
    """Write the app folder to ``out``; return it."""
    lines = [
        "# A Flower App whose code is the installed organfed package (written by organfed).",
        "[build-system]", 'requires = ["hatchling"]', 'build-backend = "hatchling.build"', "",
        "[project]", 'name = "organfed-federation"', f'version = "{__version__.split("+")[0]}"',
        'description = "Federated organ training with organfed"', 'license = "Apache-2.0"', "dependencies = []", "",
        "[tool.flwr.app]", 'publisher = "organfed"', "",
        "[tool.flwr.app.components]", 'serverapp = "organfed.server.app:app"', 'clientapp = "organfed.client.app:app"', "",
        "[tool.flwr.app.config]",
    ]
    lines += [f"{key} = {json.dumps(value)}" for key, value in default_run_config().items()]
    write_bytes_atomic(out / "pyproject.toml", ("\n".join(lines) + "\n").encode())
    return out
