"""How each PostgreSQL column type travels: the SQL that reads it, its Arrow/Parquet type, its Snowflake type.

The one place the mapping is written down (docs/data-path.md, "How types travel", has the matrix and says why
each is chosen). A column's type is what the catalog read gives (postgres/catalog.py): `format_type` of its base
type with its type modifier, e.g. `numeric(12,2)`, `character(3)`, `integer[]`, or `<name> (enum)`. A column
whose type is not here fails the extract before anything is written.

Every value is read in a form that no server setting changes (the sessions pin the rest: postgres/sessions.py),
and never rounded: a value that its Snowflake type cannot hold fails its day (postgres/values.py).
"""

import re
from dataclasses import dataclass

import pyarrow as pa

from datavault_analytics.errors import UnmappedTypeError

# Snowflake's NUMBER holds at most 38 digits (https://docs.snowflake.com/en/sql-reference/data-types-numeric).
MAX_NUMBER_PRECISION = 38
# A PostgreSQL `money` is an int64 count of the currency's smallest unit; lc_monetary gives at most 3 digits
# after the point, so 19 + 3 digits hold every value.


@dataclass(frozen=True)
class TypeMapping:
    select_template: str  # "{column}" or a cast, e.g. "{column}::text"
    arrow_type: pa.DataType  # the staged Parquet column's type
    snowflake_type: str
    canonical: str  # the value's canonical text for fingerprints: a key of fingerprint.CANONICAL_FORMS
    # What an analyst reads in the table's view (snowflake/table_schema.py): e.g. PARSE_JSON of a JSON text.
    view_template: str = "{column}"

    @property
    def read_type(self) -> pa.DataType:
        """The Arrow type ADBC returns for `select_template`: text for anything converted after the read."""
        return pa.string() if pa.types.is_decimal(self.arrow_type) else self.arrow_type


def _as_text(snowflake_type: str = "VARCHAR", view_template: str = "{column}") -> TypeMapping:
    """A type carried as PostgreSQL's own text of it (under the pinned settings), into a VARCHAR."""
    return TypeMapping("{column}::text", pa.string(), snowflake_type, "text", view_template)


def _number(precision: int, scale: int, select_template: str = "{column}::text") -> TypeMapping:
    # numeric arrives as text from ADBC whatever it is asked; postgres/values.py converts it exactly.
    return TypeMapping(
        select_template, pa.decimal128(precision, scale), f"NUMBER({precision},{scale})", "numeric"
    )


JSON_VIEW = "PARSE_JSON({column})"

# By the type's name without its modifier.
TYPE_MAPPINGS: dict[str, TypeMapping] = {
    "uuid": TypeMapping("{column}::text", pa.string(), "VARCHAR(36)", "uuid"),
    "text": TypeMapping("{column}", pa.string(), "VARCHAR", "text"),
    "character varying": TypeMapping("{column}", pa.string(), "VARCHAR", "text"),
    # char(n)'s padding is not part of its value in PostgreSQL: its cast to text drops it, and so do we.
    "character": _as_text(),
    "name": _as_text(),
    "json": _as_text(view_template=JSON_VIEW),
    "jsonb": _as_text(view_template=JSON_VIEW),
    "xml": _as_text(),
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
    "time without time zone": TypeMapping("{column}", pa.time64("us"), "TIME", "time"),
    # Snowflake has no time with a zone: the text keeps the offset, e.g. 12:30:00+02.
    "time with time zone": _as_text(),
    # ISO 8601 text (IntervalStyle iso_8601, pinned), e.g. P1Y2M3DT4H5M6S: Snowflake's INTERVAL types are a
    # preview and cannot mix months with days.
    "interval": _as_text(),
    "inet": _as_text(),
    "cidr": _as_text(),
    "macaddr": _as_text(),
    "macaddr8": _as_text(),
    "bit": _as_text(),
    "bit varying": _as_text(),
    # Its value as a number in the database's currency (lc_monetary), never its locale's text ($1,234.50).
    "money": _number(22, 3, "{column}::numeric::text"),
}
# Arrays of any type and dimension, NULL elements included: their JSON text (array_to_json), an ARRAY in the
# table's view. A lower bound other than 1 is not kept (JSON has none).
ARRAY_MAPPING = TypeMapping(
    "array_to_json({column})::text", pa.string(), "VARCHAR", "text", "PARSE_JSON({column})::ARRAY"
)
ENUM_MAPPING = _as_text()
# numeric without a precision, or with more than Snowflake's 38 digits: its exact text, unless the table's
# defs.yaml gives the column a NUMBER(p,s) (then a value that does not fit fails its day).
UNBOUNDED_NUMERIC = _as_text()

_MODIFIER = re.compile(r"\(([0-9, ]+)\)")
_NUMBER = re.compile(r"NUMBER\((\d+),\s*(\d+)\)")
# The Snowflake types a column's `snowflake_type` in defs.yaml may give, by canonical form of its type.
OVERRIDABLE = "numeric (as NUMBER(p,s), p <= 38) or any type (as VARCHAR, its text)"


def base_name(postgres_type: str) -> str:
    """The type's name without its modifier: `numeric(12,2)` -> `numeric`, `timestamp(3) with time zone` ->
    `timestamp with time zone`."""
    return re.sub(r"\s+", " ", _MODIFIER.sub("", postgres_type)).strip()


def _numeric(postgres_type: str) -> TypeMapping:
    found = _MODIFIER.search(postgres_type)
    if not found:
        return UNBOUNDED_NUMERIC
    precision, scale = (int(p) for p in found.group(1).split(","))
    if precision > MAX_NUMBER_PRECISION or scale < 0 or scale > precision:
        return UNBOUNDED_NUMERIC
    return _number(precision, scale)


def mapping_for(column: str, postgres_type: str, snowflake_type: str | None = None) -> TypeMapping:
    """How `column` of `postgres_type` travels; `snowflake_type` is its override from defs.yaml, if any."""
    if postgres_type.endswith("[]"):
        mapping = ARRAY_MAPPING
    elif postgres_type.endswith(" (enum)"):
        mapping = ENUM_MAPPING
    elif base_name(postgres_type) == "numeric":
        mapping = _numeric(postgres_type)
    else:
        try:
            mapping = TYPE_MAPPINGS[base_name(postgres_type)]
        except KeyError:
            raise UnmappedTypeError(
                f"Column {column!r} has PostgreSQL type {postgres_type!r}, which has no Snowflake mapping. "
                f"Mapped: {', '.join(sorted(TYPE_MAPPINGS))}, numeric, arrays and enums "
                "(docs/data-path.md, 'How types travel'). Leave the column out with `exclude_columns` in the "
                "table's defs.yaml, or add a mapping in datavault_analytics/type_mapping.py."
            ) from None
    return mapping if snowflake_type is None else _overridden(column, postgres_type, mapping, snowflake_type)


def _overridden(column: str, postgres_type: str, mapping: TypeMapping, snowflake_type: str) -> TypeMapping:
    wanted = snowflake_type.strip().upper()
    if wanted == "VARCHAR":
        text = mapping.select_template if mapping.arrow_type == pa.string() else "{column}::text"
        return TypeMapping(text, pa.string(), "VARCHAR", "text", mapping.view_template)
    number = _NUMBER.fullmatch(wanted)
    if number and base_name(postgres_type) in ("numeric", "money"):
        precision, scale = int(number.group(1)), int(number.group(2))
        if 1 <= precision <= MAX_NUMBER_PRECISION and scale <= precision:
            return _number(precision, scale, mapping.select_template)
    raise UnmappedTypeError(
        f"Column {column!r} ({postgres_type}) cannot be given the Snowflake type {snowflake_type!r}: a column's "
        f"`column_types` entry may be {OVERRIDABLE}. Fix the table's defs.yaml."
    )


def check_override(column: str, snowflake_type: str) -> str:
    """A `column_types` entry's type, checked without the source (dg check defs): VARCHAR or NUMBER(p,s)."""
    wanted = snowflake_type.strip().upper()
    number = _NUMBER.fullmatch(wanted)
    if wanted == "VARCHAR" or (
        number
        and 1 <= int(number.group(1)) <= MAX_NUMBER_PRECISION
        and int(number.group(2)) <= int(number.group(1))
    ):
        return wanted
    raise ValueError(f"column_types.{column}: {snowflake_type!r} is not VARCHAR or NUMBER(p,s) with p <= 38")


def snowflake_type_signature(snowflake_type: str) -> tuple[str, ...]:
    """How a Snowflake type reads back from INFORMATION_SCHEMA.COLUMNS: (data_type, length-or-precision, scale).

    Used to compare the target table with the stage: VARCHAR reads back as TEXT, NUMBER(19,0) as NUMBER 19 0.
    """
    name, _, args = snowflake_type.partition("(")
    params = tuple(a.strip() for a in args.rstrip(")").split(",")) if args else ()
    family = {"VARCHAR": "TEXT", "FLOAT": "FLOAT"}.get(name, name)
    if family == "TEXT":
        return (family, params[0] if params else "16777216")
    if family == "TIME":
        return (family,)
    return (family, *params)
