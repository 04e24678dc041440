"""N generated tables for the code-location benchmarks: copies of retrieval_log's `defs.yaml` under other names."""

import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
REAL_DEFS = REPO / "datavault_analytics" / "defs"


def write_tables(defs_folder: Path, tables: int) -> None:
    template = (REAL_DEFS / "retrieval_log" / "defs.yaml").read_text()
    for n in range(tables):
        folder = defs_folder / f"table_{n:03d}"
        folder.mkdir()
        (folder / "defs.yaml").write_text(template.replace("public.retrieval_log", f"public.table_{n:03d}"))


def project_with_tables(root: Path, tables: int) -> Path:
    """A copy of this project (package and pyproject.toml) whose defs folder holds N generated tables
    instead of the shipped two; import it with PYTHONPATH=<returned path>."""
    project = root / "project"
    shutil.copytree(
        REPO / "datavault_analytics",
        project / "datavault_analytics",
        ignore=shutil.ignore_patterns("__pycache__", ".datavault"),
    )
    shutil.copy(REPO / "pyproject.toml", project / "pyproject.toml")
    defs = project / "datavault_analytics" / "defs"
    for shipped in ("records", "retrieval_log"):
        shutil.rmtree(defs / shipped)
    write_tables(defs, tables)
    return project
