"""What `pip install .` brings, and what `dg` sees from the repository root."""

import json
import os
import subprocess
import sys
from pathlib import Path

from datavault_analytics_tests.test_definitions import PROD_DUMMIES

REPO = Path(__file__).resolve().parents[1]
EMULATORS = ("fakesnow", "moto", "duckdb", "pgserver")

# Imports the production code paths with the emulators made unimportable, as in the production image.
WITHOUT_EMULATORS = f"""
import importlib.abc, sys
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {EMULATORS!r}:
            raise ImportError(f"{{name}} is an emulator and must not be imported in production")
        if name.startswith("datavault_analytics.local_stack"):  # left out of the image (Dockerfile.dockerignore)
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, Refuse())
from datavault_analytics.definitions import defs
defs.resolve_asset_graph()
import datavault_analytics.cli.backfill, datavault_analytics.snowflake.preflight, datavault_analytics.cli
from datavault_analytics.cli import main
assert main(["stack", "status"]) == 1  # says the local stack is not installed here, in one line
print("imported", sorted(m for m in sys.modules if m.split(".")[0] in {EMULATORS!r} or ".local_stack" in m))
"""


def _clean_env(**extra: str) -> dict[str, str]:
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("DATAVAULT_", "SNOWFLAKE_", "DAGSTER_"))
    }
    return {**clean, **extra}


def test_pip_install_of_the_project_pulls_in_no_emulator(tmp_path):
    report = tmp_path / "report.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--quiet",
            "--report",
            str(report),
            str(REPO),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    installed = {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}
    assert {"dagster", "dagster-snowflake", "adbc-driver-postgresql", "polars"} <= installed
    assert installed.isdisjoint(EMULATORS), installed & set(EMULATORS)


def test_the_production_code_paths_import_no_emulator(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_EMULATORS],
        env=_clean_env(**PROD_DUMMIES),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "imported []"


def test_dg_check_defs_passes_from_the_repository_root():
    dg = Path(sys.executable).with_name("dg")
    result = subprocess.run(
        [str(dg), "check", "defs"], env=_clean_env(), cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "All definitions loaded successfully." in result.stdout + result.stderr


def test_the_tree_is_linted_and_formatted_as_make_lint_checks():
    ruff = Path(sys.executable).with_name("ruff")
    for command in ([str(ruff), "check", "."], [str(ruff), "format", "--check", "."]):
        result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]


def test_the_production_image_leaves_the_local_stack_out():
    ignored = (REPO / "deploy" / "Dockerfile.dockerignore").read_text().splitlines()
    assert "!datavault_analytics/" in ignored and "datavault_analytics/local_stack/" in ignored
    assert ignored.index("datavault_analytics/local_stack/") > ignored.index("!datavault_analytics/")
    pyproject = (REPO / "pyproject.toml").read_text()
    assert '"datavault_analytics.local_stack*"' in pyproject  # nor does a wheel built from the tree
