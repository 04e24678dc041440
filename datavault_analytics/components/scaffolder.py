"""`dg scaffold defs datavault_analytics.components.DataVaultTable <name>`: a defs.yaml to fill in."""

from datetime import date
from pathlib import Path

import dagster as dg


class DataVaultTableScaffolder(dg.Scaffolder):
    def scaffold(self, request: dg.ScaffoldRequest) -> None:
        name = Path(request.target_path).name
        dg.scaffold_component(
            request,
            {
                "table": f"public.{name}",
                "partition_column": "created_at",
                "primary_key": ["id"],
                "start_date": date.today().replace(day=1).isoformat(),
            },
        )
