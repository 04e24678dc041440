"""How each PostgreSQL column type travels: the SQL that reads it, its Arrow/Parquet type, its Snowflake type.

The one place the mapping is written down (docs/data-path.md, "How types travel", says why each is chosen); a
column whose type is not here fails the extract before anything is written.
"""

from dataclasses import dataclass

import pyarrow as pa

from datavault_analytics.errors import UnmappedTypeError


@dataclass(frozen=True)
class TypeMapping:
    select_template: str  # "{column}" or a cast, e.g. "{column}::text"
    arrow_type: pa.DataType
    snowflake_type: str
    canonical: str  # the value's canonical text for fingerprints: a key of fingerprint.CANONICAL_FORMS


TYPE_MAPPINGS: dict[str, TypeMapping] = {
    "uuid": TypeMapping("{column}::text", pa.string(), "VARCHAR(36)", "uuid"),
    "text": TypeMapping("{column}", pa.string(), "VARCHAR", "text"),
    "character varying": TypeMapping("{column}", pa.string(), "VARCHAR", "text"),
    "json": TypeMapping("{column}::text", pa.string(), "VARCHAR", "text"),
    "jsonb": TypeMapping("{column}::text", pa.string(), "VARCHAR", "text"),
    "bytea": TypeMapping("{column}", pa.binary(), "BINARY", "bytes"),
    "smallint": TypeMapping("{column}", pa.int16(), "NUMBER(5,0)", "integer"),
    "integer": TypeMapping("{column}", pa.int32(), "NUMBER(10,0)", "integer"),
    "bigint": TypeMapping("{column}", pa.int64(), "NUMBER(19,0)", "integer"),
    "real": TypeMapping("{column}", pa.float32(), "FLOAT", "float"),
    "double precision": TypeMapping("{column}", pa.float64(), "FLOAT", "float"),
    "boolean": TypeMapping("{column}", pa.bool_(), "BOOLEAN", "boolean"),
    "date": TypeMapping("{column}", pa.date32(), "DATE", "date"),
    "timestamp with time zone": TypeMapping(
        "{column}", pa.timestamp("us", tz="UTC"), "TIMESTAMP_NTZ", "timestamp"
    ),
    "timestamp without time zone": TypeMapping("{column}", pa.timestamp("us"), "TIMESTAMP_NTZ", "timestamp"),
}


def mapping_for(column: str, postgres_type: str) -> TypeMapping:
    try:
        return TYPE_MAPPINGS[postgres_type]
    except KeyError:
        raise UnmappedTypeError(
            f"Column {column!r} has PostgreSQL type {postgres_type!r}, which has no Snowflake mapping. "
            f"Supported types: {', '.join(sorted(TYPE_MAPPINGS))}. Add a mapping in "
            "datavault_analytics/type_mapping.py, or exclude the column in a view and point the pipeline at "
            "it."
        ) from None


def snowflake_type_signature(snowflake_type: str) -> tuple[str, ...]:
    """How a Snowflake type reads back from INFORMATION_SCHEMA.COLUMNS: (data_type, length-or-precision, scale).

    Used to compare the target table with the stage: VARCHAR reads back as TEXT, NUMBER(19,0) as NUMBER 19 0.
    """
    name, _, args = snowflake_type.partition("(")
    params = tuple(a.strip() for a in args.rstrip(")").split(",")) if args else ()
    family = {"VARCHAR": "TEXT", "FLOAT": "FLOAT"}.get(name, name)
    if family == "TEXT":
        return (family, params[0] if params else "16777216")
    return (family, *params)
