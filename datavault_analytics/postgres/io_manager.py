"""The PostgreSQL source's IO manager: hands the stage one lazy stream per day."""

import dagster as dg

from datavault_analytics.errors import asset_errors
from datavault_analytics.postgres.extract import SourceDay, SourceExtract
from datavault_analytics.postgres.resource import PostgresResource
from datavault_analytics.table.day_window import day_windows
from datavault_analytics.table.spec import table_of


def _describe_keys(keys: list[str]) -> str:
    return keys[0] if len(keys) == 1 else f"{keys[0]} .. {keys[-1]}" if keys else "no days"


class PostgresSourceIOManager(dg.ConfigurableIOManager):
    """Loads the PostgreSQL source asset as a lazy, per-day stream of Arrow record batches.

    The column list comes from the catalog when the run starts, so every day of a range run shares one
    schema, and an unmapped type fails here, before anything is written.
    """

    postgres: dg.ResourceDependency[PostgresResource]

    def handle_output(self, context: dg.OutputContext, obj) -> None:
        raise NotImplementedError(
            "The PostgreSQL source is written by DataVault's backend, never by this pipeline."
        )

    def load_input(self, context: dg.InputContext) -> SourceExtract:
        keys = context.asset_partition_keys
        with asset_errors(f"Reading the PostgreSQL source's columns to extract {_describe_keys(keys)}"):
            postgres = self.postgres.for_table(
                table_of(context.upstream_output.definition_metadata, context.asset_key)
            )
            windows = day_windows(keys)
            columns = postgres.source_columns()
        return SourceExtract(
            [SourceDay(postgres, columns, window, context.step_context.run_id) for window in windows]
        )
