"""Packaging: the wheel holds every subpackage on disk, and code imports only through ``organfed.``."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOP = {"shared": "organfed.shared", "server": "organfed.server", "client": "organfed.client"}


def packages_on_disk() -> set[str]:
    found = set()
    for top, name in TOP.items():
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / top).parts
            found.add(".".join((name, *rel)))
    return found


@pytest.mark.slow
def test_wheel_contains_every_package_and_the_demo_assets(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True, timeout=600,
    )
    (wheel,) = tmp_path.glob("organfed-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    in_wheel = {n[: -len("/__init__.py")].replace("/", ".") for n in names if n.endswith("/__init__.py")}
    assert in_wheel == packages_on_disk()
    assert not any(n.split("/")[0] in TOP for n in names), "a generic top-level package would land in site-packages"
    shipped = {n for n in names if n.startswith("organfed/shared/demo/assets/")}
    on_disk = {p for p in (ROOT / "shared/demo/assets").rglob("*") if p.is_file()}
    assert len(shipped) == len(on_disk)


def test_code_imports_only_through_organfed():
    bad = re.compile(r"^\s*(from|import)\s+(shared|server|client)\b", re.MULTILINE)
    offenders = [
        str(p.relative_to(ROOT))
        for top in (*TOP, "tests", "examples")
        for p in (ROOT / top).rglob("*.py")
        if bad.search(p.read_text(encoding="utf-8"))
    ]
    assert offenders == []
