"""A day's content fingerprint: its row count and the sum of a 63-bit number cut from each row's MD5.

Order-independent and of fixed size, so any day can be fingerprinted without a sort or a long string.
PostgreSQL, Snowflake and Python compute it from the same canonical text of every column (below).
"""

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

NULL = "~"  # never a canonical value: those start with a digit, a hex digit or a letter of true/false
SEPARATOR = "|"

# Per canonical form: (PostgreSQL SQL, Snowflake SQL) of a non-NULL value's text. Both sides hash the text's
# UTF-8 bytes. Binary is hex-encoded on purpose: Snowflake documents MD5's argument as a string, and a
# BINARY argument would be converted with the session's BINARY_OUTPUT_FORMAT (upper-case hex or base64).
CANONICAL_FORMS: dict[str, tuple[str, str]] = {
    # length-prefixed, so a separator inside a value cannot shift a column boundary
    "text": ("length({c}::text) || ':' || {c}::text", "LENGTH({c}) || ':' || {c}"),
    # always 36 characters of hex digits and dashes: no prefix needed
    "uuid": ("{c}::text", "{c}"),
    "bytes": ("encode({c}, 'hex')", "HEX_ENCODE({c}, 0)"),
    "integer": ("{c}::text", "TO_VARCHAR({c})"),
    "boolean": ("{c}::text", "TO_VARCHAR({c})"),
    "date": ("to_char({c}, 'YYYY-MM-DD')", "TO_VARCHAR({c}, 'YYYY-MM-DD')"),
    # microseconds since 1970-01-01 UTC; a Snowflake TIMESTAMP_NTZ holds UTC wall-clock time
    "timestamp": (
        "(extract(epoch from {c}) * 1000000)::bigint::text",
        "TO_VARCHAR(DATE_PART(EPOCH_MICROSECOND, {c}))",
    ),
    # microseconds since midnight
    "time": (
        "(extract(epoch from {c}) * 1000000)::bigint::text",
        "TO_VARCHAR(DATEDIFF(MICROSECOND, '00:00:00'::TIME, {c}))",
    ),
    # the shortest exact decimal text: no trailing zeros after the point, no point if none remain, "0" for
    # zero. A NUMBER(12,2) prints 12.50 where the source's unconstrained numeric may print 12.5 or 12.500.
    "numeric": (
        "trim_scale(({c})::numeric)::text",
        r"REGEXP_REPLACE(TO_VARCHAR({c}), '(\\.[0-9]*[1-9])0+$|\\.0+$', '\\1')",
    ),
    "float": (),  # filled in below: exact integers, not each side's printed text of the value
}

# A float's printed text differs between engines (PostgreSQL prints 12, the emulator 12.0; a REAL column
# prints 0.1 in PostgreSQL but its widened value 0.100000001490116 in Snowflake). So a finite non-zero
# float is written as M p E, the integers with |x| = M * 2^E and 2^52 <= M < 2^53, found with arithmetic
# that IEEE 754 makes exact on both sides: dividing by a power of two and casting an integral double.
# LN only guesses the exponent; the CASE corrects a guess that is off by one. -0 reads as 0.
FLOAT_MANTISSA = 2**52


def _float_form(
    x: str, ln2: str, power: str, to_int: str, to_text: str, nan: str, inf: str, minus_inf: str
) -> str:
    magnitude = f"ABS({x})"
    guess = f"GREATEST(-1074, LEAST(1023, {to_int.format(f'FLOOR(LN({magnitude}) / {ln2})')}))"
    scaled = f"{magnitude} / {power.format(guess)}"
    exponent = f"({guess} + CASE WHEN {scaled} >= 2 THEN 1 WHEN {scaled} < 1 THEN -1 ELSE 0 END)"
    mantissa = to_text.format(to_int.format(f"{magnitude} / {power.format(exponent)} * {FLOAT_MANTISSA}"))
    return (
        f"CASE WHEN {x} = 0 THEN '0' WHEN {x} = {nan} THEN 'nan' WHEN {x} = {inf} THEN 'inf' "
        f"WHEN {x} = {minus_inf} THEN '-inf' ELSE CASE WHEN {x} < 0 THEN '-' ELSE '' END || {mantissa} || 'p' || "
        f"{to_text.format(f'{exponent} - 52')} END"
    )


CANONICAL_FORMS["float"] = (
    _float_form(
        "({c})::float8",  # a real is widened exactly, as Parquet's float32 is in Snowflake
        ln2="ln(2::float8)",
        power="power(2::float8, {})",
        to_int="({})::bigint",
        to_text="({})::text",
        nan="'NaN'::float8",
        inf="'Infinity'::float8",
        minus_inf="'-Infinity'::float8",
    ),
    _float_form(
        "{c}",
        ln2="LN(2)",
        power="POWER(2, {})",
        to_int="({})::NUMBER(38, 0)",
        to_text="TO_VARCHAR({})",
        nan="'NaN'::FLOAT",
        inf="'inf'::FLOAT",
        minus_inf="'-inf'::FLOAT",
    ),
)


@dataclass(frozen=True)
class Fingerprint:
    rows: int
    total: int  # sum over the rows of the row numbers (row_number)

    def __str__(self) -> str:
        return f"{self.rows}:{self.total % 2**128:032x}"

    @classmethod
    def parse(cls, text: str) -> "Fingerprint":
        """The inverse of str()."""
        rows, total = text.split(":")
        return cls(int(rows), int(total, 16))


EMPTY = Fingerprint(0, 0)


@dataclass(frozen=True)
class DaySummary:
    """The drift scan's cheap tier for one day: what an index-only scan gives, on either side."""

    rows: int
    latest_update_us: int | None  # max(updated_at), microseconds since 1970-01-01 UTC; None: never updated

    def __str__(self) -> str:
        return f"{self.rows} rows, latest update {self.latest_update_us}"


NO_ROWS = DaySummary(0, None)


def _message(columns: Sequence[tuple[str, str]], side: int, expression_of) -> str:
    """`columns` are (name, canonical form); `expression_of(name)` is the SQL of the column's value."""
    parts = [
        f"COALESCE({CANONICAL_FORMS[form][side].format(c=expression_of(name))}, '{NULL}')"
        for name, form in columns
    ]
    return f" || '{SEPARATOR}' || ".join(parts)


# A row's number: the MD5 digest's first 8 bytes as a big-endian number, less its top bit, so it is a
# non-negative 63-bit value on both sides (a bigint in PostgreSQL, whose sum needs no unsigned fix-up).
def postgres_row_number(columns: Sequence[tuple[str, str]], expression_of) -> str:
    return f"(('x' || left(md5({_message(columns, 0, expression_of)}), 16))::bit(64)::bigint & {2**63 - 1})"


def snowflake_row_number(columns: Sequence[tuple[str, str]], quote) -> str:
    return f"MOD(MD5_NUMBER_UPPER64({_message(columns, 1, quote)}), {2**63})"


def canonical_text(value: object, form: str) -> str:
    """Python's canonical text of one value, as the SQL forms above produce it."""
    if value is None:
        return NULL
    if form == "text":
        return f"{len(str(value))}:{value}"
    if form == "uuid":
        return str(value)
    if form == "bytes":
        return bytes(value).hex()
    if form == "boolean":
        return "true" if value else "false"
    if form == "date":
        return value.isoformat()
    if form == "timestamp":
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
        return str((delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds)
    if form == "float":
        return _float_text(float(value))
    if form == "numeric":
        return _numeric_text(Decimal(value))
    if form == "time":
        return str(((value.hour * 60 + value.minute) * 60 + value.second) * 1_000_000 + value.microsecond)
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _numeric_text(x: Decimal) -> str:
    text = format(x, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _float_text(x: float) -> str:
    if x == 0:
        return "0"
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    fraction, exponent = math.frexp(abs(x))  # abs(x) = fraction * 2^exponent, 0.5 <= fraction < 1
    return f"{'-' if x < 0 else ''}{int(fraction * 2 * FLOAT_MANTISSA)}p{exponent - 53}"


def row_number(row: Mapping[str, object], columns: Sequence[tuple[str, str]]) -> int:
    text = SEPARATOR.join(canonical_text(row[name], form) for name, form in columns)
    return int.from_bytes(hashlib.md5(text.encode()).digest()[:8], "big") % 2**63  # noqa: S324 - a checksum


def python_fingerprint(
    rows: Iterable[Mapping[str, object]], columns: Sequence[tuple[str, str]]
) -> Fingerprint:
    """The fingerprint of rows held in Python (the preflight's canary rows, the property tests)."""
    count = total = 0
    for row in rows:
        count += 1
        total += row_number(row, columns)
    return Fingerprint(count, total)
