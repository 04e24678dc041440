"""The values read from PostgreSQL as the stage holds them: exact, or refused.

ADBC returns numeric as text (type_mapping.py reads it so); here it becomes the column's decimal, and a value
that does not fit (more digits, more decimals, NaN) fails the day instead of being rounded. Dates and
timestamps outside years 1 to 9999 fail it too: Snowflake and its drivers cannot hold them, and ADBC turns
PostgreSQL's ±infinity into a wrong instant (../shared/notes/postgres-types.md, section 4).
"""

from decimal import Decimal, InvalidOperation

import pyarrow as pa
import pyarrow.compute as pc

from datavault_analytics.errors import UnloadableValueError

# Years 1 to 9999, in each Arrow type's own unit.
_TIMESTAMP_US = (-62_135_596_800_000_000, 253_402_300_799_999_999)
_DATE_DAYS = (-719_162, 2_932_896)
# A decimal256 holds 76 digits; text longer than a sign, 76 digits and a point could wrap in the cast.
_LONGEST_DECIMAL_TEXT = 78


def staged_batch(batch: pa.RecordBatch, schema: pa.Schema, where: str, key: list[str]) -> pa.RecordBatch:
    """`batch` as read, in the staged `schema`. `where` names the table and day, `key` the primary key's
    columns, for the error that names an unloadable value's row."""
    arrays = []
    for field, array in zip(schema, batch.columns, strict=True):
        if pa.types.is_decimal(field.type) and not pa.types.is_decimal(array.type):
            array = _decimal(array, field, batch, where, key)
        elif pa.types.is_timestamp(field.type):
            _within(array.cast(pa.int64()), _TIMESTAMP_US, field, batch, where, key)
        elif pa.types.is_date32(field.type):
            _within(array.cast(pa.int32()), _DATE_DAYS, field, batch, where, key)
        arrays.append(array)
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _decimal(array: pa.Array, field: pa.Field, batch, where: str, key: list[str]) -> pa.Array:
    wanted: pa.Decimal128Type = field.type
    try:
        longest = pc.max(pc.utf8_length(array)).as_py() or 0
        if longest <= _LONGEST_DECIMAL_TEXT:
            # Through decimal256, whose cast raises where a direct one to decimal128 could wrap (arrow#49817).
            return array.cast(pa.decimal256(76, wanted.scale)).cast(wanted)
    except pa.ArrowInvalid:
        pass
    row = next(i for i, text in enumerate(array.to_pylist()) if not _fits(text, wanted))
    raise _unloadable(
        field, batch, row, where, key, f"does not fit Snowflake's NUMBER({wanted.precision},{wanted.scale})"
    )


def _fits(text: str | None, wanted: pa.Decimal128Type) -> bool:
    if text is None:
        return True
    try:
        value = Decimal(text)
    except InvalidOperation:
        return False
    if not value.is_finite():
        return False
    _, digits, exponent = value.as_tuple()
    decimals = max(0, -exponent)
    if decimals > wanted.scale and any(digits[len(digits) - decimals + wanted.scale :]):
        return False
    return max(0, len(digits) + exponent) <= wanted.precision - wanted.scale


def _within(
    values: pa.Array, bounds: tuple[int, int], field: pa.Field, batch, where: str, key: list[str]
) -> None:
    least, most = pc.min_max(values).values()
    if least.as_py() is None or (bounds[0] <= least.as_py() and most.as_py() <= bounds[1]):
        return
    outside = pc.or_(pc.less(values, bounds[0]), pc.greater(values, bounds[1]))
    row = pc.index(outside, True).as_py()
    raise _unloadable(
        field,
        batch,
        row,
        where,
        key,
        "is outside years 1 to 9999 (±infinity, or a year Snowflake cannot hold)",
        show_value=False,
    )


def _unloadable(field, batch, row: int, where: str, key: list[str], why: str, show_value: bool = True):
    key_values = ", ".join(f"{k}={batch.column(k)[row].as_py()!s}" for k in key if k in batch.schema.names)
    value = f" {batch.column(field.name)[row].as_py()!r}" if show_value else ""
    return UnloadableValueError(
        f"{where}: the value{value} of column {field.name!r} in the row {key_values} {why}; nothing of the day "
        "was loaded. Fix the value in PostgreSQL, or give the column another Snowflake type in `column_types` "
        "in the table's defs.yaml (VARCHAR keeps any value exactly), then re-run the day."
    )
