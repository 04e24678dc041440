"""Snowflake's own rules where fakesnow is lenient, as a layer in front of fakesnow's HTTP server.

Each rule in `RULES` rejects what Snowflake rejects or mis-loads, with Snowflake's error text, or adds a
behaviour the loader depends on; each cites its documentation page.
"""

import asyncio
import gzip
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import fakesnow.server as fakesnow_server
import pyarrow as pa
import pyarrow.compute as pc
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

# https://docs.snowflake.com/en/sql-reference/data-types-text: VARCHAR holds at most 16 MB (older accounts' limit).
MAX_STRING_BYTES = 16 * 1024 * 1024
# https://docs.snowflake.com/en/sql-reference/data-types-text#binary: BINARY holds at most 8 MB.
MAX_BINARY_BYTES = 8 * 1024 * 1024
# https://docs.snowflake.com/en/sql-reference/sql/copy-into-table (FILES = ...): at most 1,000 file names.
MAX_COPY_FILES = 1000
# https://docs.snowflake.com/en/sql-reference/parameters: account defaults of the session parameters we model.
PARAMETER_DEFAULTS = {
    "TIMEZONE": "America/Los_Angeles",
    "LOCK_TIMEOUT": "43200",
    "QUERY_TAG": "",
    "BINARY_OUTPUT_FORMAT": "HEX",
    "ABORT_DETACHED_QUERY": "false",
}

RULES = {
    "parquet-binary": "COPY of Parquet into BINARY columns needs BINARY_AS_TEXT=FALSE or USE_VECTORIZED_SCANNER=TRUE "
    "(docs: sql-reference/sql/create-file-format, TYPE = PARQUET)",
    "parquet-timezone": "with logical types, a UTC-adjusted Parquet timestamp is TIMESTAMP_LTZ, converted into "
    "TIMESTAMP_NTZ in the session's TIMEZONE (docs: user-guide/data-load-considerations-prepare)",
    "files-limit": "FILES=(...) names at most 1,000 files (docs: sql-reference/sql/copy-into-table)",
    "value-size": "a VARCHAR value over 16 MB in a COPY or a result fails, and so does a BINARY value over 8 MB "
    "in a result (docs: sql-reference/data-types-text)",
    "table-locks": "DELETE, UPDATE and MERGE lock the table until their transaction ends; a waiter fails after "
    "LOCK_TIMEOUT (docs: sql-reference/transactions#resource-locking)",
    "transactions": "BEGIN NAME, SHOW TRANSACTIONS, SHOW LOCKS, SYSTEM$ABORT_TRANSACTION; a dead client's "
    "transaction stays open (docs: sql-reference/transactions)",
    "session-parameters": "ALTER SESSION SET/UNSET and SHOW PARAMETERS for the parameters above "
    "(docs: sql-reference/parameters)",
    "query-in-progress": "a statement still running after QUERY_IN_PROGRESS_SECONDS is answered 'query in "
    "progress' (code 333333) with a result URL the client polls; a request sent again with the same requestId "
    "is the same query, never a second execution (snowflake-connector-python: network.py, "
    "QUERY_IN_PROGRESS_CODE, retryCount)",
    "temporary-tables": "a TEMPORARY table is the session's own and is dropped when the session ends; kept "
    "as a plain table here, since fakesnow's COPY cannot see DuckDB's temp catalog "
    "(docs: user-guide/tables-temp-transient)",
}

# Snowflake answers a query request within about 45 s, with the result or "in progress"; the connector gives
# up on a request after 60 s and sends it again, so an emulator that answers later never answers at all.
QUERY_IN_PROGRESS_SECONDS = 45.0
QUERY_IN_PROGRESS_CODE = "333333"
KEEP_ANSWERS_SECONDS = 300.0  # how long a finished query's answer is kept for a request sent again

_IDENT = r'(?:"[^"]+"|[A-Za-z_][\w$]*)'
_NAME = rf"{_IDENT}(?:\s*\.\s*{_IDENT}){{0,2}}"
_LOCKING_DML = re.compile(rf"^\s*(?:DELETE\s+FROM|UPDATE|MERGE\s+INTO)\s+({_NAME})", re.I)
_COPY = re.compile(rf"^\s*COPY\s+INTO\s+({_NAME})", re.I)
_BEGIN = re.compile(
    r"^\s*(?:BEGIN|START\s+TRANSACTION)(?:\s+(?:WORK|TRANSACTION))?(?:\s+NAME\s+(\w+))?\s*;?\s*$", re.I
)
_END = re.compile(r"^\s*(COMMIT|ROLLBACK)(?:\s+WORK)?\s*;?\s*$", re.I)
_ALTER_SET = re.compile(r"^\s*ALTER\s+SESSION\s+SET\s+(.+?)\s*;?\s*$", re.I | re.S)
_ALTER_UNSET = re.compile(r"^\s*ALTER\s+SESSION\s+UNSET\s+(.+?)\s*;?\s*$", re.I | re.S)
_ASSIGNMENT = re.compile(r"(\w+)\s*=\s*('(?:[^']|'')*'|[^\s,]+)")
_SHOW_TRANSACTIONS = re.compile(r"^\s*SHOW\s+TRANSACTIONS(\s+IN\s+ACCOUNT)?\s*;?\s*$", re.I)
_SHOW_LOCKS = re.compile(r"^\s*SHOW\s+LOCKS(\s+IN\s+ACCOUNT)?\s*;?\s*$", re.I)
_SHOW_PARAMETERS = re.compile(
    r"^\s*SHOW\s+PARAMETERS(?:\s+LIKE\s+'([^']*)')?(?:\s+IN\s+SESSION)?\s*;?\s*$", re.I
)
_ABORT = re.compile(r"^\s*SELECT\s+SYSTEM\$ABORT_TRANSACTION\s*\(\s*(-?\d+)\s*\)\s*;?\s*$", re.I)
_CONTEXT_FUNCTION = re.compile(r"\bCURRENT_(ROLE|WAREHOUSE|ACCOUNT|USER)\s*\(\s*\)", re.I)
_LIST = re.compile(r"^\s*(?:LIST|LS)\s+@([\w.\"]+)(/[^\s;]*)?\s*;?\s*$", re.I)
_CREATE_TEMPORARY = re.compile(
    rf"^(\s*CREATE\s+(?:OR\s+REPLACE\s+)?)(?:LOCAL\s+|GLOBAL\s+)?(?:TEMP|TEMPORARY)\s+"
    rf"(TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?)({_NAME})",
    re.I,
)
_MD5_NUMBER = re.compile(r"\bMD5_NUMBER_(UPPER|LOWER)64\s*\(", re.I)
_FILE_FORMAT = re.compile(r"FILE_FORMAT\s*=\s*\(([^)]*)\)", re.I)
_FILES = re.compile(r"\bFILES\s*=\s*\(([^)]*)\)", re.I)
_STRING = re.compile(r"'((?:[^']|'')*)'")


def _null_preserving_timestamps() -> None:
    """fakesnow encodes a NULL timestamp in a result as 1970-01-01 (its struct has no null mask); Snowflake
    returns NULL. Wrapped once, here, until fakesnow fixes it."""
    import fakesnow.arrow as fakesnow_arrow

    original = fakesnow_arrow.timestamp_to_sf_struct
    if getattr(original, "keeps_nulls", False):
        return

    def timestamp_to_sf_struct(ts):
        if isinstance(ts, pa.ChunkedArray):
            ts = ts.combine_chunks()
        struct = original(ts)
        if not ts.null_count:
            return struct
        return pa.StructArray.from_arrays(
            [struct.field(i) for i in range(struct.type.num_fields)],
            fields=list(struct.type),
            mask=ts.is_null(),
        )

    timestamp_to_sf_struct.keeps_nulls = True
    fakesnow_arrow.timestamp_to_sf_struct = timestamp_to_sf_struct


class SnowflakeError(Exception):
    """An error as Snowflake reports it: code, SQL state and message."""

    def __init__(self, code: int, sqlstate: str, message: str):
        super().__init__(message)
        self.code, self.sqlstate, self.message = code, sqlstate, message


@dataclass
class Transaction:
    id: int
    session: "Session"
    name: str | None
    started_on: datetime
    locks: dict[str, tuple[str, datetime]] = field(default_factory=dict)  # table -> (query id, acquired on)


@dataclass
class Session:
    token: str
    id: int
    user: str
    role: str
    warehouse: str
    parameters: dict[str, str]
    transaction: Transaction | None = None
    temporary_tables: set[str] = field(default_factory=set)

    def parameter(self, name: str) -> str:
        return self.parameters.get(name, PARAMETER_DEFAULTS[name])


def _sql_literal(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def _values_query(columns: list[str], rows: list[tuple]) -> str:
    """A SELECT that fakesnow runs and formats like any result: the rows, or none, with these columns."""
    names = ", ".join(f'"{c}"' for c in columns)
    if not rows:
        return "SELECT " + ", ".join(f'NULL AS "{c}"' for c in columns) + " WHERE FALSE"
    values = ", ".join("(" + ", ".join(_sql_literal(v) for v in row) + ")" for row in rows)
    return f"SELECT * FROM (VALUES {values}) AS t({names})"  # noqa: S608 - literals quoted by _sql_literal


def _unquote(value: str) -> str:
    value = value.strip()
    if value.startswith("'") and value.endswith("'"):
        return value[1:-1].replace("''", "'")
    return value


def _options(text: str) -> dict[str, str]:
    return {name.upper(): _unquote(value).upper() for name, value in _ASSIGNMENT.findall(text)}


class StrictSnowflake:
    """fakesnow's server app with Snowflake's rules in front; one per FakeSnow instance."""

    def __init__(
        self,
        fake_snow: Any,
        s3_filesystem: Any = None,
        lock_poll_seconds: float = 0.05,
        in_progress_seconds: float = QUERY_IN_PROGRESS_SECONDS,
    ):
        _null_preserving_timestamps()
        self.fake_snow = fake_snow
        self.s3_filesystem = s3_filesystem
        self.lock_poll_seconds = lock_poll_seconds
        self.in_progress_seconds = in_progress_seconds
        self.sessions: dict[str, Session] = {}
        self.queries: dict[str, asyncio.Task] = {}  # our query id -> the statement's execution
        self.requests: dict[tuple[str, str], str] = {}  # (session token, requestId) -> our query id
        self.table_locks: dict[str, Transaction] = {}
        self._next_session = 1
        self._macro_catalogs: set[str] = set()
        self.app = Starlette(
            routes=[
                Route("/session/v1/login-request", self.login_request, methods=["POST"]),
                Route("/session", self.session_request, methods=["POST"]),
                Route("/queries/v1/query-request", self.query_request, methods=["POST"]),
                Route("/queries/{query_id}/result", self.query_result, methods=["GET"]),
                *[
                    r
                    for r in fakesnow_server.routes
                    if r.path not in ("/session/v1/login-request", "/session", "/queries/v1/query-request")
                ],
            ]
        )

    # -- sessions ------------------------------------------------------------------------------------

    async def login_request(self, request: Request) -> Response:
        body = json.loads(await _body(request))
        response = await fakesnow_server.login_request(request)
        answer = json.loads(response.body)
        token = answer["data"]["token"]
        # With a master token the connector's close() reaches the server (it skips the logout without one),
        # so a closed session ends as in Snowflake, and only a dead client's session stays open.
        answer["data"]["masterToken"] = token
        data = body.get("data", {})
        given = {k.upper(): str(v) for k, v in (data.get("SESSION_PARAMETERS") or {}).items()}
        self.sessions[token] = Session(
            token=token,
            id=self._next_session,
            user=str(data.get("LOGIN_NAME") or "").upper(),
            role=(request.query_params.get("roleName") or "PUBLIC").upper(),
            warehouse=(request.query_params.get("warehouse") or "").upper(),
            parameters={k: v for k, v in given.items() if k in PARAMETER_DEFAULTS},
        )
        self._next_session += 1
        return JSONResponse(answer)

    async def session_request(self, request: Request) -> Response:
        """Logout: Snowflake rolls back a session's open transaction when the session ends."""
        if request.query_params.get("delete") and (session := self.sessions.pop(_token(request), None)):
            if session.transaction is not None:
                await self._roll_back(session.transaction)
            for table in session.temporary_tables:
                await run_in_threadpool(
                    self.fake_snow.duck_conn.cursor().execute, f"DROP TABLE IF EXISTS {table}"
                )
        return await fakesnow_server.session(request)

    # -- statements ----------------------------------------------------------------------------------

    async def query_request(self, request: Request) -> Response:
        """One statement, answered within `in_progress_seconds`: its result, or "in progress" with a URL to
        poll. A request sent again (same requestId, after a timeout or a reset) joins the same execution."""
        token = _token(request)
        await request.body()  # read now: the execution may outlive this HTTP request
        key = (token, request.query_params.get("requestId") or uuid.uuid4().hex)
        query_id = self.requests.get(key)
        if query_id is None or query_id not in self.queries:
            query_id = str(uuid.uuid4())
            self.requests[key] = query_id
            self.queries[query_id] = asyncio.ensure_future(self._execute(request))
            self.queries[query_id].add_done_callback(lambda _: self._forget_later(key, query_id))
        return await self._answer(query_id)

    async def query_result(self, request: Request) -> Response:
        """GET /queries/<id>/result: the client's poll of a statement answered "in progress"."""
        query_id = request.path_params["query_id"]
        if query_id not in self.queries:
            return _error_response(SnowflakeError(2003, "02000", f"Query {query_id} does not exist."))
        return await self._answer(query_id)

    async def _answer(self, query_id: str) -> Response:
        execution = self.queries[query_id]
        # asyncio.wait, not wait_for: a client that hangs up must not cancel the statement.
        done, _ = await asyncio.wait({execution}, timeout=self.in_progress_seconds)
        if done:
            return execution.result()
        return JSONResponse(
            {
                "code": QUERY_IN_PROGRESS_CODE,
                "data": {"queryId": query_id, "getResultUrl": f"/queries/{query_id}/result"},
                "message": "Query execution in progress.",
                "success": True,
            }
        )

    def _forget_later(self, key: tuple[str, str], query_id: str) -> None:
        def forget() -> None:
            self.queries.pop(query_id, None)
            if self.requests.get(key) == query_id:
                del self.requests[key]

        asyncio.get_running_loop().call_later(KEEP_ANSWERS_SECONDS, forget)

    async def _execute(self, request: Request) -> Response:
        session = self.sessions.get(_token(request))
        if session is None:
            return await fakesnow_server.query_request(request)
        body = json.loads(await _body(request))
        sql = body.get("sqlText") or ""
        try:
            rewritten, after = await self._before(session, sql)
            if rewritten != sql:
                _set_body(request, {**body, "sqlText": rewritten})
            response = await fakesnow_server.query_request(request)
            return await after(response) if after else response
        except SnowflakeError as error:
            return _error_response(error)
        except Exception as error:  # noqa: BLE001 - Snowflake answers a statement's failure as a SQL error
            # Never HTTP 500: the connector re-sends a query that got one, with the same request id, until
            # its network_timeout (by default forever), and the request joins this same failed execution.
            return _error_response(
                SnowflakeError(603, "XX000", f"SQL execution internal error: {type(error).__name__}: {error}")
            )

    async def _before(self, session: Session, sql: str):
        """(SQL to run, a coroutine taking the response) for one statement, or raise its Snowflake error."""
        if match := _ALTER_SET.match(sql):
            for name, value in _ASSIGNMENT.findall(match.group(1)):
                if name.upper() in PARAMETER_DEFAULTS:
                    session.parameters[name.upper()] = _unquote(value)
            return _SUCCESS, None
        if match := _ALTER_UNSET.match(sql):
            for name in re.split(r"[\s,]+", match.group(1)):
                session.parameters.pop(name.upper(), None)
            return _SUCCESS, None
        if match := _BEGIN.match(sql):
            if session.transaction is None:  # Snowflake ignores BEGIN inside an open transaction
                session.transaction = Transaction(
                    time.time_ns() // 1000, session, match.group(1), datetime.now(UTC)
                )
            return "BEGIN", None
        if _END.match(sql):
            return sql, self._ended(session)
        if match := _SHOW_TRANSACTIONS.match(sql):
            return self._show_transactions(session, bool(match.group(1))), None
        if match := _SHOW_LOCKS.match(sql):
            return self._show_locks(session, bool(match.group(1))), None
        if match := _SHOW_PARAMETERS.match(sql):
            return self._show_parameters(session, match.group(1)), None
        if match := _ABORT.match(sql):
            return await self._abort(session, int(match.group(1))), None
        if match := _LIST.match(sql):
            return await self._list(session, match.group(1), match.group(2) or "/"), None
        if match := _CREATE_TEMPORARY.match(sql):
            table = self._qualified(session, match.group(3))
            session.temporary_tables.add(".".join(f'"{part}"' for part in table.split(".")))
            return match.group(1) + match.group(2) + sql[match.start(3) :], None
        if _MD5_NUMBER.search(sql):
            await self._ensure_md5_macros(session)
        if match := _LOCKING_DML.match(sql):
            return sql, await self._lock_table(session, self._qualified(session, match.group(1)))
        if match := _COPY.match(sql):
            return sql, await self._check_copy(session, self._qualified(session, match.group(1)), sql)
        sql = _CONTEXT_FUNCTION.sub(lambda m: _sql_literal(self._context(session, m.group(1).upper())), sql)
        return sql, self._check_result_sizes

    def _context(self, session: Session, name: str) -> str:
        return {
            "ROLE": session.role,
            "WAREHOUSE": session.warehouse,
            "ACCOUNT": "FAKESNOW",
            "USER": session.user,
        }[name]

    def _connection(self, session: Session) -> Any:
        return fakesnow_server.sessions[session.token]

    def _qualified(self, session: Session, name: str) -> str:
        parts = [
            p.strip().strip('"') if p.strip().startswith('"') else p.strip().upper()
            for p in re.findall(_IDENT, name)
        ]
        conn = self._connection(session)
        return ".".join([conn.database, conn.schema, *parts][-3:] if len(parts) < 3 else parts)

    # -- transactions and locks ----------------------------------------------------------------------

    def _ended(self, session: Session):
        async def after(response: Response) -> Response:
            if json.loads(response.body).get("success") and session.transaction is not None:
                self._release(session.transaction)
                session.transaction = None
            return response

        return after

    def _release(self, transaction: Transaction) -> None:
        for table in transaction.locks:
            if self.table_locks.get(table) is transaction:
                del self.table_locks[table]
        transaction.locks.clear()

    async def _roll_back(self, transaction: Transaction) -> None:
        connection = fakesnow_server.sessions.get(transaction.session.token)
        if connection is not None:
            await run_in_threadpool(connection.rollback)
        self._release(transaction)
        transaction.session.transaction = None

    async def _lock_table(self, session: Session, table: str):
        """Wait for the table's lock (held by another transaction's DELETE, UPDATE or MERGE) up to
        LOCK_TIMEOUT, then take it for this statement, or for the rest of this session's transaction."""
        timeout = float(session.parameter("LOCK_TIMEOUT") or 0)
        waited_since = time.monotonic()
        while (holder := self.table_locks.get(table)) is not None and holder.session is not session:
            if time.monotonic() - waited_since >= timeout:
                query_id, _ = holder.locks[table]
                raise SnowflakeError(
                    625,
                    "57014",
                    (
                        f"Statement '{query_id}' has locked table '{table.rsplit('.', 1)[-1]}' in "
                        f"transaction {holder.id} and this lock has not yet been released.\nYour statement "
                        f"was aborted because it waited for this lock longer than LOCK_TIMEOUT ({timeout:g} "
                        "seconds)."
                    ),
                )
            await asyncio.sleep(self.lock_poll_seconds)
        transaction = session.transaction or Transaction(0, session, None, datetime.now(UTC))
        self.table_locks[table] = transaction

        async def after(response: Response) -> Response:
            data = json.loads(response.body)
            if session.transaction is transaction and data.get("success"):
                transaction.locks.setdefault(table, (data["data"].get("queryId", ""), datetime.now(UTC)))
            else:  # autocommit, or the statement failed: nothing is held past it
                if self.table_locks.get(table) is transaction and table not in transaction.locks:
                    del self.table_locks[table]
            return response

        return after

    def _visible(self, session: Session, in_account: bool) -> list[Transaction]:
        return [
            s.transaction
            for s in self.sessions.values()
            if s.transaction is not None and (in_account or s.user == session.user)
        ]

    def _show_transactions(self, session: Session, in_account: bool) -> str:
        rows = [
            (
                t.id,
                t.session.user,
                t.session.id,
                t.name or str(t.id),
                t.started_on.isoformat(),
                "running",
                "0",
            )
            for t in self._visible(session, in_account)
        ]
        return _values_query(["id", "user", "session", "name", "started_on", "state", "scope"], rows)

    def _show_locks(self, session: Session, in_account: bool) -> str:
        rows = [
            (table, "PARTITIONS", t.id, t.started_on.isoformat(), "HOLDING", acquired.isoformat(), query_id)
            for t in self._visible(session, in_account)
            for table, (query_id, acquired) in t.locks.items()
        ]
        return _values_query(
            [
                "resource",
                "type",
                "transaction",
                "transaction_started_on",
                "status",
                "acquired_on",
                "query_id",
            ],
            rows,
        )

    def _show_parameters(self, session: Session, like: str | None) -> str:
        pattern = re.compile(re.escape(like or "%").replace("%", ".*").replace("_", "."), re.I)
        rows = [
            (name, session.parameter(name), default, "SESSION" if name in session.parameters else "", "", "")
            for name, default in PARAMETER_DEFAULTS.items()
            if pattern.fullmatch(name)
        ]
        return _values_query(["key", "value", "default", "level", "description", "type"], rows)

    async def _abort(self, session: Session, transaction_id: int) -> str:
        found = [t for t in self._visible(session, in_account=True) if t.id == transaction_id]
        if not found:
            raise SnowflakeError(
                2003, "02000", f"Transaction {transaction_id} does not exist or not authorized."
            )
        await self._roll_back(found[0])
        return _values_query(
            [f"SYSTEM$ABORT_TRANSACTION({transaction_id})"],
            [(f"Transaction {transaction_id} has been aborted.",)],
        )

    # -- loading -------------------------------------------------------------------------------------

    def _table_types(self, table: str) -> dict[str, str]:
        database, schema, name = table.split(".")
        rows = (
            self.fake_snow.duck_conn.cursor()
            .execute(
                "SELECT column_name, data_type FROM duckdb_columns() WHERE upper(database_name) = ? "
                "AND upper(schema_name) = ? AND upper(table_name) = ?",
                [database.upper(), schema.upper(), name.upper()],
            )
            .fetchall()
        )
        return {column: data_type for column, data_type in rows}

    async def _check_copy(self, session: Session, table: str, sql: str):
        files = _FILES.search(sql)
        named = len(_STRING.findall(files.group(1))) if files else 0
        if named > MAX_COPY_FILES:
            raise SnowflakeError(
                1008,
                "22023",
                (
                    f"SQL compilation error:\nInvalid value for parameter FILES: the list names {named} "
                    f"files, more than the maximum of {MAX_COPY_FILES}."
                ),
            )
        file_format = _FILE_FORMAT.search(sql)
        options = _options(file_format.group(1)) if file_format else {}
        if options.get("TYPE") != "PARQUET":
            return None
        vectorized = options.get("USE_VECTORIZED_SCANNER") == "TRUE"
        binary_as_text = options.get("BINARY_AS_TEXT", "TRUE") == "TRUE" and not vectorized
        logical_types = options.get("USE_LOGICAL_TYPE") == "TRUE" or vectorized
        types = await run_in_threadpool(self._table_types, table)
        if binary_as_text and "BLOB" in types.values():
            column = next(c for c, t in types.items() if t == "BLOB")
            # Snowflake reads the bytes as UTF-8 text, then decodes that text with BINARY_INPUT_FORMAT (HEX).
            raise SnowflakeError(
                100115,
                "22000",
                (
                    "The following string is not a legal hex-encoded value: (Parquet BYTE_ARRAY column "
                    f"{column} read as text because BINARY_AS_TEXT is TRUE)"
                ),
            )
        connection = self._connection(session)
        timezone = session.parameter("TIMEZONE")
        shifted = (
            logical_types and timezone.upper() not in ("UTC", "ETC/UTC") and "TIMESTAMP" in types.values()
        )
        if (
            shifted
        ):  # DuckDB then casts the files' TIMESTAMPTZ into the NTZ columns in that zone, as Snowflake does
            await run_in_threadpool(
                connection._duck_conn.execute, f"SET SESSION TimeZone = {_sql_literal(timezone)}"
            )
        await run_in_threadpool(self._check_value_sizes, connection, sql, types)

        async def after(response: Response) -> Response:
            if shifted:
                await run_in_threadpool(connection._duck_conn.execute, "SET SESSION TimeZone = 'UTC'")
            return response

        return after

    def _check_value_sizes(self, connection: Any, sql: str, types: dict[str, str]) -> None:
        """A staged string over 16 MB fails the COPY in Snowflake. Only column chunks larger than the
        limit are read: a smaller chunk cannot hold a longer value."""
        import pyarrow.parquet as pq

        source, files = re.search(r"FROM\s+@([\w.\"]+)(/\S*)?", sql, re.I), _FILES.search(sql)
        if not source or not files or self.s3_filesystem is None or "VARCHAR" not in types.values():
            return
        url = self._stage_url(connection, source.group(1)).rstrip("/") + (source.group(2) or "/")
        for name in _STRING.findall(files.group(1)):
            try:
                handle = self.s3_filesystem.open(url.rstrip("/") + "/" + name, "rb")
            except OSError as error:  # S3 down, or the file gone: Snowflake fails the COPY with this
                raise SnowflakeError(91003, "22000", f"Failure using stage area. Cause: [{error}]") from None
            with handle:
                parquet = pq.ParquetFile(handle)
                strings = [i for i, f in enumerate(parquet.schema_arrow) if pa.types.is_string(f.type)]
                for group in range(parquet.num_row_groups):
                    for index in strings:
                        if (
                            parquet.metadata.row_group(group).column(index).total_uncompressed_size
                            <= MAX_STRING_BYTES
                        ):
                            continue
                        column = parquet.read_row_group(
                            group, columns=[parquet.schema_arrow[index].name]
                        ).column(0)
                        if (longest := pc.max(pc.binary_length(column)).as_py() or 0) > MAX_STRING_BYTES:
                            raise SnowflakeError(
                                100082,
                                "22000",
                                (
                                    f"Max LOB size ({MAX_STRING_BYTES}) exceeded, actual size of parsed "
                                    f"column is {longest}\n  File '{name}', column "
                                    f"{parquet.schema_arrow[index].name}"
                                ),
                            )

    def _stage_url(self, connection: Any, stage: str) -> str:
        cursor = connection.cursor()
        cursor.execute(f"SHOW STAGES LIKE {_sql_literal(stage.split('.')[-1].strip(chr(34)).upper())}")
        rows = cursor.fetchall()
        names = [d[0].lower() for d in cursor.description]
        if not rows:
            raise SnowflakeError(
                2003, "02000", f"SQL compilation error:\nStage '{stage}' does not exist or not authorized."
            )
        return dict(zip(names, rows[0], strict=False))["url"]

    async def _list(self, session: Session, stage: str, path: str) -> str:
        if self.s3_filesystem is None:
            raise SnowflakeError(2003, "02000", "LIST needs the S3 emulator")
        url = (await run_in_threadpool(self._stage_url, self._connection(session), stage)).rstrip("/") + path

        def listing() -> list[tuple]:
            try:
                found = self.s3_filesystem.find(url, detail=True)
            except FileNotFoundError:
                found = {}
            return [
                (f"s3://{name}", int(info.get("size") or 0), "", "") for name, info in sorted(found.items())
            ]

        return _values_query(["name", "size", "md5", "last_modified"], await run_in_threadpool(listing))

    # -- functions and results -----------------------------------------------------------------------

    async def _ensure_md5_macros(self, session: Session) -> None:
        """MD5_NUMBER_UPPER64 / LOWER64, which fakesnow lacks: the digest's halves as big-endian unsigned
        numbers (docs: sql-reference/functions/md5_number_upper64). sqlglot names them m_d5_number_*."""
        catalog = self._connection(session).database
        if not catalog or catalog in self._macro_catalogs:
            return

        def create() -> None:
            duck = self.fake_snow.duck_conn.cursor()
            for half, offset in (("upper", 1), ("lower", 17)):
                # NUMBER(20,0), as Snowflake types it; fakesnow cannot return a UBIGINT of 2^63 or more.
                duck.execute(
                    f"CREATE OR REPLACE MACRO {catalog}.main.m_d5_number_{half}64(msg) AS ('0x' || "
                    f"substr(md5(msg), {offset}, 16))::UBIGINT::DECIMAL(20, 0)"
                )

        await run_in_threadpool(create)
        self._macro_catalogs.add(catalog)

    async def _check_result_sizes(self, response: Response) -> Response:
        """A result value over Snowflake's size limits is an error there, never a long value."""
        data = json.loads(response.body).get("data") or {}
        rowset = data.get("rowsetBase64") or ""
        if len(rowset) * 3 // 4 <= MAX_BINARY_BYTES:  # no value can be over a limit in a smaller result
            return response
        import base64

        table = pa.ipc.open_stream(base64.b64decode(rowset)).read_all()
        for column in table.columns:
            if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
                limit = MAX_STRING_BYTES
            elif pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
                limit = MAX_BINARY_BYTES
            else:
                continue
            if (pc.max(pc.binary_length(column)).as_py() or 0) > limit:
                raise SnowflakeError(100078, "22000", "String '(result)' is too long and would be truncated")
        return response


_SUCCESS = "SELECT 'Statement executed successfully.' AS \"status\""


def _token(request: Request) -> str:
    auth = request.headers.get("Authorization") or ""
    return auth[17:-1]


async def _body(request: Request) -> bytes:
    body = await request.body()
    return gzip.decompress(body) if request.headers.get("Content-Encoding") == "gzip" else body


def _set_body(request: Request, data: dict) -> None:
    raw = json.dumps(data).encode()
    request._body = gzip.compress(raw) if request.headers.get("Content-Encoding") == "gzip" else raw


def _error_response(error: SnowflakeError) -> JSONResponse:
    code = f"{error.code:06d}"
    return JSONResponse(
        {
            "data": {"errorCode": code, "sqlState": error.sqlstate},
            "code": code,
            "message": error.message,
            "success": False,
        }
    )
