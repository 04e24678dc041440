"""`dg scaffold defs datavault_analytics.components.DataVaultTable <name>`: a defs.yaml to fill in.

Its column names are guesses: `datavault-analytics tables check <name>` says at once which are wrong.
"""

import os
from datetime import date
from pathlib import Path

import dagster as dg


def first_day() -> str:
    """The deployment's first day (DATAVAULT_START_DATE), else the local stack's first seeded day, else the first
    of this month: a new table's partitions start where the rows beside it do."""
    if os.environ.get("DATAVAULT_START_DATE"):
        return os.environ["DATAVAULT_START_DATE"]
    try:
        from datavault_analytics.local_stack.stack import local_environment
    except ModuleNotFoundError:  # the production image has no local stack
        local_environment = dict
    return local_environment().get("DATAVAULT_START_DATE") or date.today().replace(day=1).isoformat()


class DataVaultTableScaffolder(dg.Scaffolder):
    def scaffold(self, request: dg.ScaffoldRequest) -> None:
        name = Path(request.target_path).name
        dg.scaffold_component(
            request,
            {
                "table": f"public.{name}",
                "partition_column": "created_at",
                "primary_key": ["id"],
                "start_date": first_day(),
            },
        )
