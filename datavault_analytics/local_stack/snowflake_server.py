"""fakesnow's Snowflake HTTP server on 127.0.0.1, persisted to a folder, reading S3 from moto.

Shared by several processes through the real connector, with `snowflake_rules` in front; how it differs
from `fakesnow -s` is in docs/local-stack.md.
"""

import argparse
import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyarrow.fs
from fsspec.implementations.arrow import ArrowFSWrapper

from datavault_analytics.local_stack.credentials import (
    LOCAL_S3_CREDENTIALS,
    LOCAL_SNOWFLAKE_ACCOUNT,
    LOCAL_SNOWFLAKE_PASSWORD,
    LOCAL_SNOWFLAKE_USER,
)
from datavault_analytics.local_stack.errors import LocalStackError, PortInUseError
from datavault_analytics.local_stack.processes import LOCALHOST, port_answers, wait_until
from datavault_analytics.local_stack.snowflake_rules import StrictSnowflake


class _PerThreadPositionFile:
    """A read-only file whose position belongs to the calling thread.

    DuckDB's Python filesystem reads at an offset as two calls, seek() then read(), and several of its
    threads share one handle: with one shared position, a thread can read at another's offset, and
    a Parquet file larger than a few MB loads as garbage ("ZSTD Decompression failure", "Invalid data").
    Here each thread's seek() only moves its own position, and read() is a positional read_at().
    """

    def __init__(self, file: Any):
        self._file = file
        self._position = threading.local()

    def tell(self) -> int:
        return getattr(self._position, "value", 0)

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.tell(), 2: self._file.size}[whence]
        self._position.value = base + offset
        return self._position.value

    def read(self, length: int = -1) -> bytes:
        start = self.tell()
        if length is None or length < 0:
            length = max(0, self._file.size - start)
        chunks, done = [], 0
        while done < length:
            chunk = self._file.stream.read_at(length - done, start + done)
            if not chunk:
                break
            chunks.append(chunk)
            done += len(chunk)
        self._position.value = start + done
        return b"".join(chunks)

    def __enter__(self) -> "_PerThreadPositionFile":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._file.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)


class S3ArrowFileSystem(ArrowFSWrapper):
    """fsspec's view of pyarrow's S3 client, registered on DuckDB for `s3://` and `s3a://` paths."""

    protocol = ("s3", "s3a")
    root_marker = ""
    cachable = False

    def _open(self, path: str, mode: str = "rb", *args: Any, **kwargs: Any) -> Any:
        file = super()._open(path, mode, *args, **kwargs)
        return _PerThreadPositionFile(file) if mode == "rb" and file.stream.seekable() else file

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        path = str(path)
        for prefix in ("s3://", "s3a://"):
            if path.startswith(prefix):
                path = path[len(prefix) :]
        return path.rstrip("/")


def s3_filesystem(s3_endpoint_url: str) -> S3ArrowFileSystem:
    """The `s3://` filesystem for DuckDB, talking to the S3 emulator at s3_endpoint_url."""
    endpoint = urlsplit(s3_endpoint_url)
    return S3ArrowFileSystem(
        pyarrow.fs.S3FileSystem(
            endpoint_override=endpoint.netloc,
            scheme=endpoint.scheme or "http",
            access_key=LOCAL_S3_CREDENTIALS["aws_access_key_id"],
            secret_key=LOCAL_S3_CREDENTIALS["aws_secret_access_key"],
            region=LOCAL_S3_CREDENTIALS["region_name"],
        )
    )


class SnowflakeServer:
    """fakesnow's HTTP server in a thread of this process, with its databases in db_path.

    port=0 picks a free port. `connect()` opens a real snowflake.connector connection to it.
    """

    def __init__(self, db_path: Path, s3_endpoint_url: str, port: int = 0, host: str = LOCALHOST):
        self.db_path = Path(db_path).absolute()
        self.s3_endpoint_url = s3_endpoint_url
        self.host = host
        self.port = port
        self._uvicorn: Any = None
        self._thread: threading.Thread | None = None
        self._fake_snow: Any = None
        self._filesystem_names: list[str] = []

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 60.0) -> "SnowflakeServer":
        import fakesnow.server as fakesnow_server
        import uvicorn
        from fakesnow.instance import FakeSnow

        if self.port and port_answers(self.port, self.host):
            raise PortInUseError("Snowflake (fakesnow)", self.port)
        self.db_path.mkdir(parents=True, exist_ok=True)
        fake_snow = FakeSnow(db_path=self.db_path)
        names_before = set(fake_snow.duck_conn.list_filesystems())
        filesystem = s3_filesystem(self.s3_endpoint_url)
        fake_snow.duck_conn.register_filesystem(filesystem)
        self._filesystem_names = sorted(set(fake_snow.duck_conn.list_filesystems()) - names_before)
        fakesnow_server.shared_fs = fake_snow
        fakesnow_server.sessions.clear()
        self._fake_snow = fake_snow

        # Snowflake's rules where fakesnow is lenient (snowflake_rules.py) stand in front of every request.
        self.rules = StrictSnowflake(fake_snow, filesystem)
        config = uvicorn.Config(self.rules.app, host=self.host, port=self.port, log_level="warning")
        self._uvicorn = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._uvicorn.run, name="fakesnow-server", daemon=True)
        self._thread.start()
        wait_until(
            lambda: self._uvicorn.started or not self._thread.is_alive(),
            part="Snowflake (fakesnow)",
            address=self.address,
            log_path=None,
            timeout=timeout,
        )
        if not self._uvicorn.started:
            self._close_duckdb()
            raise LocalStackError(f"Snowflake (fakesnow) could not listen on {self.address}")
        if not self.port:
            self.port = self._uvicorn.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop serving, then checkpoint and close DuckDB so every database file is complete."""
        if self._uvicorn is not None and self._thread is not None:
            self._uvicorn.should_exit = True
            self._thread.join(timeout)
            if self._thread.is_alive():
                self._uvicorn.force_exit = True
                self._thread.join(5)
        self._uvicorn = None
        self._thread = None
        self._close_duckdb()

    def connect(
        self, database: str | None = None, schema: str | None = None, network_timeout: int = 10, **kwargs: Any
    ) -> Any:
        """A real snowflake.connector connection to this server.

        network_timeout is small by default so that an error fails a test in seconds: the connector
        retries a failed request until that timeout runs out.
        """
        import snowflake.connector

        args = self.connection_args(database, schema, network_timeout)
        return snowflake.connector.connect(**args, **kwargs)

    def connection_args(
        self, database: str | None = None, schema: str | None = None, network_timeout: int = 10
    ) -> dict[str, Any]:
        """Keyword arguments for snowflake.connector.connect (or SnowflakeResource) to reach this server."""
        return snowflake_connection_args(self.host, self.port, database, schema, network_timeout)

    def __enter__(self) -> "SnowflakeServer":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _close_duckdb(self) -> None:
        fake_snow, self._fake_snow = self._fake_snow, None
        if fake_snow is None:
            return
        import fakesnow.server as fakesnow_server

        fakesnow_server.sessions.clear()
        conn = fake_snow.duck_conn
        for name in self._filesystem_names:
            conn.unregister_filesystem(name)
        attached = conn.execute(
            "select database_name from duckdb_databases() where not internal and path is not null"
        ).fetchall()
        for (database_name,) in attached:
            conn.execute(f'checkpoint "{database_name}"')
        conn.close()


def snowflake_connection_args(
    host: str, port: int, database: str | None = None, schema: str | None = None, network_timeout: int = 30
) -> dict[str, Any]:
    """Connector arguments for a fakesnow server: plain http, no telemetry, errors fail fast."""
    args: dict[str, Any] = {
        "account": LOCAL_SNOWFLAKE_ACCOUNT,
        "user": LOCAL_SNOWFLAKE_USER,
        "password": LOCAL_SNOWFLAKE_PASSWORD,
        "host": host,
        "port": port,
        "protocol": "http",
        "network_timeout": network_timeout,
        "login_timeout": network_timeout,
        "session_parameters": {"CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED": False},
    }
    if database:
        args["database"] = database
    if schema:
        args["schema"] = schema
    return args


def serve_until_signalled(port: int, db_path: Path, s3_endpoint_url: str) -> None:
    """Serve on port until SIGTERM or SIGINT, then stop cleanly (see SnowflakeServer.stop)."""
    stop_requested = threading.Event()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signal_number, lambda *_: stop_requested.set())
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    started = time.monotonic()
    server = SnowflakeServer(db_path, s3_endpoint_url, port).start()
    print(
        f"Snowflake (fakesnow) serving http://{server.address} in {time.monotonic() - started:.1f} s; "
        f"databases in {server.db_path}; S3 at {s3_endpoint_url}",
        flush=True,
    )
    try:
        stop_requested.wait()
    finally:
        server.stop()
    print("Snowflake (fakesnow) stopped; databases checkpointed", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db-path", type=Path, required=True)
    parser.add_argument("--s3-endpoint", required=True, help="e.g. http://127.0.0.1:55433")
    args = parser.parse_args(argv)
    serve_until_signalled(args.port, args.db_path, args.s3_endpoint)


if __name__ == "__main__":
    main()
