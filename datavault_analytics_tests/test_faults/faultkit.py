"""What the fault tests use to stop a run at a precise step, from outside it.

No hook in the pipeline's code: a run is stopped where it talks to a server.
- `HttpProxy` forwards HTTP between the run and a real server (moto's S3, fakesnow's Snowflake), logs
  every request, and can hold the first request that matches (before forwarding it, or after the server
  answered, holding the answer). The run then waits, at exactly that step, until the test kills it.
- `PostgresGate` puts the source table behind a view whose rows pass a gate function; at a chosen row
  the function waits on an advisory lock the test holds, so the extract stops in the middle of its read.
- `RunProcess` runs the stage and load assets in a process of their own (run_partition.py), which the
  test can SIGKILL, with its output in a file.
"""

import gzip
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psycopg

REPO_ROOT = Path(__file__).resolve().parents[2]
DEADLINE_SECONDS = 120.0
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "content-length",
}


def wait_until(
    predicate: Callable[[], object],
    what: str,
    timeout: float = DEADLINE_SECONDS,
    process: "RunProcess | None" = None,
):
    """Poll predicate until it returns something truthy (returned); fail after timeout, or at once if
    process exits first, with what was awaited and the process's output."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if process is not None and process.exited():
            raise AssertionError(f"the run exited ({process.returncode}) before {what}:\n{process.tail()}")
        if time.monotonic() > deadline:
            detail = f":\n{process.tail()}" if process is not None else ""
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{detail}")
        time.sleep(0.05)


# -- HTTP ------------------------------------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def target(self) -> str:
        """The path, percent-decoded (an S3 key's '=' travels as %3D)."""
        return unquote(self.path)

    @property
    def sql(self) -> str:
        """The SQL text of a Snowflake connector query request, else ''."""
        if "/queries/v1/query-request" not in self.path:
            return ""
        body = gzip.decompress(self.body) if self.headers.get("content-encoding") == "gzip" else self.body
        return json.loads(body).get("sqlText", "")

    @property
    def json(self) -> dict:
        body = gzip.decompress(self.body) if self.headers.get("content-encoding") == "gzip" else self.body
        return json.loads(body)


@dataclass
class Gate:
    """Holds the first request that `matches`, at `when` ("request": before forwarding it; "response":
    after the server answered). `arrived` is set when it holds one; `release(forward)` lets it go on
    (forward=True) or drops it, closing the client's connection without an answer."""

    matches: Callable[[Request], bool]
    when: str = "request"
    arrived: threading.Event = field(default_factory=threading.Event)
    _released: threading.Event = field(default_factory=threading.Event)
    _forward: bool = True
    held: Request | None = None

    def release(self, forward: bool = True) -> None:
        self._forward = forward
        self._released.set()


class HttpProxy:
    """A logging HTTP proxy on 127.0.0.1 in front of `upstream` (http://host:port)."""

    def __init__(self, upstream: str):
        parts = urlsplit(upstream)
        self.upstream_host, self.upstream_port = parts.hostname, parts.port
        self.requests: list[Request] = []
        self._gates: list[Gate] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                proxy._handle(self)

            do_PUT = do_POST = do_DELETE = do_HEAD = do_GET

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="test-http-proxy", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> "HttpProxy":
        self._thread.start()
        return self

    def stop(self) -> None:
        for gate in self._gates:
            gate.release(forward=False)
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "HttpProxy":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def hold(self, matches: Callable[[Request], bool], when: str = "request") -> Gate:
        gate = Gate(matches, when)
        with self._lock:
            self._gates.append(gate)
        return gate

    def _claim(self, request: Request, when: str) -> Gate | None:
        with self._lock:
            for gate in self._gates:
                if gate.when == when and gate.held is None and gate.matches(request):
                    gate.held = request
                    return gate
        return None

    def _wait(self, gate: Gate | None) -> bool:
        """Hold at gate (if any) until released; whether to go on."""
        if gate is None:
            return True
        gate.arrived.set()
        gate._released.wait()
        return gate._forward

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        handler.close_connection = True
        headers = {k.lower(): v for k, v in handler.headers.items()}
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while (size := int(handler.rfile.readline().split(b";")[0], 16)) > 0:
                body += handler.rfile.read(size)
                handler.rfile.readline()
            handler.rfile.readline()
        else:
            body = handler.rfile.read(int(headers.get("content-length") or 0))
        request = Request(handler.command, handler.path, headers, body)
        with self._lock:
            self.requests.append(request)
        if not self._wait(self._claim(request, "request")):
            return
        upstream = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=600)
        try:
            forwarded = {k: v for k, v in handler.headers.items() if k.lower() not in _HOP_BY_HOP}
            if body or handler.command in ("PUT", "POST"):
                forwarded["Content-Length"] = str(len(body))
            upstream.request(handler.command, handler.path, body=body or None, headers=forwarded)
            response = upstream.getresponse()
            payload = response.read()
            status, reason, response_headers = response.status, response.reason, response.getheaders()
        finally:
            upstream.close()
        if not self._wait(self._claim(request, "response")):
            return
        try:
            handler.send_response(status, reason)
            for name, value in response_headers:
                if name.lower() not in _HOP_BY_HOP:
                    handler.send_header(name, value)
            length = (
                dict((k.lower(), v) for k, v in response_headers).get("content-length")
                if handler.command == "HEAD"
                else str(len(payload))
            )
            handler.send_header("Content-Length", length or "0")
            handler.send_header("Connection", "close")
            handler.end_headers()
            if handler.command != "HEAD":
                handler.wfile.write(payload)
        except OSError:  # the client is gone (killed): nothing to answer
            pass


def s3_writes(proxy: HttpProxy, day: str) -> list[str]:
    """The stage's writes to one day, in order, as short labels: 'delete manifest', 'put part-00000.parquet',
    'put manifest' (a DeleteObjects whose keys include the manifest is 'delete manifest'; a multipart upload
    counts when it completes). A part's staging id is left out of its label: part-00000-<id>.parquet is
    'put part-00000.parquet'."""
    labels = []
    for request in list(proxy.requests):
        path, _, query = request.target.partition("?")
        name = path.rsplit("/", 1)[1]
        if (
            request.method == "POST"
            and query.startswith("delete")
            and f"dt={day}/_manifest.json".encode() in request.body
        ):
            labels.append("delete manifest")
        elif f"/dt={day}/" in path and (
            (request.method == "PUT" and "partNumber=" not in query)
            or (request.method == "POST" and "uploadId=" in query)
        ):
            labels.append(
                "put manifest"
                if name == "_manifest.json"
                else "put " + re.sub(r"-[0-9a-f]{12}\.parquet$", ".parquet", name)
            )
    return labels


# -- PostgreSQL ------------------------------------------------------------------------------------

GATE_LOCK_KEY = 8_675_309  # pg_advisory_lock(bigint) key the test holds to close the gate


class PostgresGate:
    """The source table behind a view whose gate function waits, at one row, for a lock the test holds.

    `records` becomes a view over `records_data`; every row passes `datavault_test_gate(id)`, which for
    the chosen id takes (and drops) a shared advisory lock. While the test holds that lock exclusively,
    an extract that reaches the row waits there: part of the day has been read, the rest has not.
    """

    def __init__(self, dsn: str):
        self.dsn = dsn
        self._holder: psycopg.Connection | None = None

    def install(self, gate_id: str) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute("ALTER TABLE records RENAME TO records_data")
            conn.execute(f"""
                CREATE FUNCTION datavault_test_gate(row_id uuid) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
                BEGIN
                    IF row_id = '{gate_id}'::uuid THEN
                        PERFORM pg_advisory_lock_shared({GATE_LOCK_KEY});
                        PERFORM pg_advisory_unlock_shared({GATE_LOCK_KEY});
                    END IF;
                    RETURN true;
                END $$""")
            conn.execute("CREATE VIEW records AS SELECT * FROM records_data WHERE datavault_test_gate(id)")

    def close(self) -> None:
        self._holder = psycopg.connect(self.dsn, autocommit=True)
        self._holder.execute("SELECT pg_advisory_lock(%s)", (GATE_LOCK_KEY,))

    def open(self) -> None:
        if self._holder is not None:
            self._holder.close()
            self._holder = None

    def waiting(self) -> list[tuple]:
        """(pid, state, query) of the sessions waiting at the gate."""
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            return conn.execute(
                "SELECT a.pid, a.state, a.query FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND NOT l.granted AND l.objid = %s",
                (GATE_LOCK_KEY,),
            ).fetchall()


def advisory_locks(dsn: str, key: tuple[int, int]) -> list[tuple[int, bool, str]]:
    """(pid, granted, application_name) of every session holding or waiting for the partition lock `key`."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(
            "SELECT l.pid, l.granted, a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = "
            "l.pid WHERE l.locktype = 'advisory' AND l.classid = %s AND l.objid = %s AND l.objsubid = 2 "
            "ORDER BY "
            "l.granted DESC",
            key,
        ).fetchall()


# -- a run in a process of its own ---------------------------------------------------------------


def dagster_home(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return folder


class RunProcess:
    """`run_partition.py` in a new process: `args` are its command-line arguments, `env` its environment."""

    def __init__(self, env: dict[str, str], args: list[str], log_path: Path):
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in wait()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "datavault_analytics_tests.test_faults.run_partition", *args],
            env={**os.environ, **env},
            cwd=REPO_ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    def exited(self) -> bool:
        return self.process.poll() is not None

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    @property
    def run_id(self) -> str:
        """The Dagster run's id, which run_partition.py prints as it ends."""
        [run_id] = [line.split()[1] for line in self.output().splitlines() if line.startswith("RUN ")]
        return run_id

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind runs in the process."""
        os.kill(self.process.pid, signal.SIGKILL)
        self.wait()

    def wait(self, timeout: float = DEADLINE_SECONDS) -> int:
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"the run did not finish within {timeout:.0f} s:\n{self.tail()}") from None
        finally:
            self._log.close()
        return code


# -- servers a test can stop -----------------------------------------------------------------------


class SnowflakeProcess:
    """fakesnow's server in a process of its own (one process holds one fakesnow), so a test can stop it
    and start it again on the same port with the same databases. Quacks like SnowflakeServer."""

    host = "127.0.0.1"

    def __init__(self, db_path: Path, s3_endpoint_url: str, port: int, log_path: Path):
        self.db_path, self.s3_endpoint_url, self.port, self.log_path = (
            db_path,
            s3_endpoint_url,
            port,
            log_path,
        )
        self.process: subprocess.Popen | None = None

    def start(self) -> "SnowflakeProcess":
        from datavault_analytics.local_stack.processes import port_answers

        with open(self.log_path, "a") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "datavault_analytics.local_stack.snowflake_server",
                    "--port",
                    str(self.port),
                    "--db-path",
                    str(self.db_path),
                    "--s3-endpoint",
                    self.s3_endpoint_url,
                ],
                cwd=REPO_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_until(lambda: port_answers(self.port) or self.process.poll() is not None, "fakesnow to listen")
        assert self.process.poll() is None, self.log_path.read_text()
        return self

    def stop(self) -> None:
        """SIGTERM: fakesnow checkpoints its databases and exits; the port stops answering."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(60)
        self.process = None

    def connection_args(
        self, database: str | None = None, schema: str | None = None, network_timeout: int = 10
    ):
        from datavault_analytics.local_stack.snowflake_server import snowflake_connection_args

        return snowflake_connection_args(self.host, self.port, database, schema, network_timeout)

    def connect(self, database: str | None = None, schema: str | None = None, **kwargs):
        import snowflake.connector

        return snowflake.connector.connect(**self.connection_args(database, schema), **kwargs)


def run_events(home: Path, run_id: str, event_type) -> list:
    """The events of `event_type` that run `run_id` recorded in the Dagster instance at `home`, in order."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)) as instance:
        return [entry.dagster_event for entry in instance.all_logs(run_id, of_type=event_type)]
