"""`datavault-analytics tables check [NAME ...]`: every problem of every configured table, found at once.

It connects to PostgreSQL (read-only, the catalog only: no row is read) and reports what the first run would
fail on (missing columns, unmapped types, a nullable or wrongly typed partition column), and what would make
the daily runs costly or wrong without failing them (no index led by the partition column, no unique index on
the key), so that adding a table takes one try.
"""

from dataclasses import dataclass, field

from datavault_analytics.errors import PermanentError, TransientError
from datavault_analytics.postgres.catalog import source_problems
from datavault_analytics.postgres.resource import PostgresResource
from datavault_analytics.table.pipeline import TablePipeline


@dataclass
class TableReport:
    table: TablePipeline
    problems: list[str] = field(default_factory=list)  # the first run would fail
    warnings: list[str] = field(default_factory=list)  # it would run, slowly or unchecked
    columns: list[str] = field(default_factory=list)  # "name type -> Snowflake type"

    def lines(self) -> list[str]:
        spec = self.table.spec
        verdict = (
            f"{len(self.problems)} problem(s), {len(self.warnings)} warning(s)"
            if self.problems or self.warnings
            else "ok"
        )
        out = [f"{self.table.name} ({spec.source_name} -> Snowflake {spec.snowflake_table}): {verdict}"]
        out += [f"  problem: {p}" for p in self.problems]
        out += [f"  warning: {w}" for w in self.warnings]
        out += [f"  column   {c}" for c in self.columns]
        return out


def check_table(table: TablePipeline, postgres: PostgresResource) -> TableReport:
    """`postgres` is bound to `table`."""
    report, spec = TableReport(table), table.spec
    try:
        rows = postgres.catalog_rows()
        if not rows:
            report.problems.append(
                f"{spec.source_name} does not exist, or has no columns this role can see: check `table` in "
                "its defs.yaml and the role's GRANTs."
            )
            return report
        report.problems += source_problems(spec, rows)
        excluded = {c.lower() for c in spec.exclude_columns}
        partition = next((c for c in rows if c.name == spec.partition_column.lower()), None)
        if partition is not None and not partition.in_table:
            report.warnings.append(
                f"{spec.source_name} is a view, whose columns' NOT NULL the catalog does not know: a row whose "
                f"{spec.partition_column!r} is NULL is in no day and never loaded. Make sure the base column is "
                "NOT NULL."
            )
        for name, postgres_type, *_ in rows:
            if name in excluded:
                report.columns.append(f"{name} {postgres_type} -> excluded")
                continue
            try:
                report.columns.append(
                    f"{name} {postgres_type} -> {spec.mapping_of(name, postgres_type).snowflake_type}"
                )
            except PermanentError:
                pass  # already a problem
        if not postgres.partition_index():
            column, index = (
                spec.partition_column.lower(),
                f"{spec.postgres_table.lower()}_{spec.partition_column.lower()}_idx",
            )
            report.warnings.append(
                f"no index starts with the partition column {column!r}, so every day's read scans the whole "
                f"table on DataVault's database. Create one without blocking writes: CREATE INDEX CONCURRENTLY "
                f"{index} ON {spec.qualified_postgres} ({column})"
                + (f" INCLUDE ({spec.updated_at_column.lower()})" if spec.updated_at_column else "")
                + ";"
            )
        if not postgres.has_unique_key():
            report.warnings.append(
                f"no unique index covers primary_key {list(spec.primary_key)}: if it is not unique, the "
                "duplicate check fails each day that repeats a key. Name the table's real key in defs.yaml."
            )
    except (PermanentError, TransientError) as error:
        report.problems.append(str(error))
    return report
