"""The soak's code location: the shipped one (datavault_analytics.definitions, every table under its defs/) and
the soak's own tables (soak/defs: the table of the new types), under the shipped location's name. Each of those
is built as the component builds it; Dagster merges only one component tree."""

import dagster as dg

import datavault_analytics.definitions
from datavault_analytics.components.datavault_table import (
    build_table_definitions,
    configured_table,
    configured_tables,
)
from soak.types_table import SOAK_DEFS_FOLDER

defs = dg.Definitions.merge(
    datavault_analytics.definitions.defs,
    *(
        build_table_definitions(configured_table(name, defs_folder=SOAK_DEFS_FOLDER))
        for name in configured_tables(SOAK_DEFS_FOLDER)
    ),
)
