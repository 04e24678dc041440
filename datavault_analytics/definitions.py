"""The code location: every table under defs/ (one DataVaultTable each) and the shared resources."""

from pathlib import Path

import dagster as dg

import datavault_analytics.defs

# The defs folder is found through its module, not through pyproject.toml (what `dg.load_from_defs_folder`
# looks for): the production image installs the package into site-packages, where there is no project file.
tables = dg.ComponentTree(
    defs_module=datavault_analytics.defs,
    project_root=Path(__file__).parent.parent,
    code_location_name="datavault_analytics",
)

defs = dg.Definitions.merge(
    tables.build_defs(),
    # A run's two steps are sequential; one process per run saves a Python start-up per step.
    dg.Definitions(executor=dg.in_process_executor),
)
