"""moto's S3 over HTTP on 127.0.0.1: the local stand-in for the Parquet stage bucket.

In memory only: the stack creates the stage bucket again after each start.
"""

import argparse
import logging
import signal
import threading

from moto.server import ThreadedMotoServer

from datavault_analytics.local_stack.credentials import LOCAL_S3_CREDENTIALS  # noqa: F401 (the stack's)
from datavault_analytics.local_stack.errors import PortInUseError
from datavault_analytics.local_stack.processes import LOCALHOST, port_answers


class _MotoServer(ThreadedMotoServer):
    """ThreadedMotoServer whose start() raises when the port cannot be bound, instead of hanging."""

    startup_error: BaseException | None = None

    def _server_entry(self) -> None:
        try:
            super()._server_entry()
        except BaseException as error:
            self.startup_error = error
            self._server_ready_event.set()
            raise


class S3Server:
    """moto's S3 in a thread of this process; port=0 picks a free port."""

    def __init__(self, port: int = 0):
        self.port = port
        self._moto: _MotoServer | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"

    def start(self) -> "S3Server":
        # moto's request log prints a line per request; keep only warnings.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        if self.port and port_answers(self.port):
            raise PortInUseError("S3 (moto)", self.port)
        moto = _MotoServer(ip_address=LOCALHOST, port=self.port, verbose=False)
        moto.start()
        if moto.startup_error is not None:
            raise PortInUseError("S3 (moto)", self.port, str(moto.startup_error)) from moto.startup_error
        self._moto = moto
        self.port = moto.get_host_and_port()[1]
        return self

    def stop(self) -> None:
        if self._moto is not None:
            self._moto.stop()
            self._moto = None

    def __enter__(self) -> "S3Server":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def serve_until_signalled(port: int) -> None:
    """Serve S3 on port until SIGTERM or SIGINT."""
    stop_requested = threading.Event()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signal_number, lambda *_: stop_requested.set())
    server = S3Server(port).start()
    print(f"S3 (moto) serving {server.endpoint_url}; in memory only", flush=True)
    try:
        stop_requested.wait()
    finally:
        server.stop()
    print("S3 (moto) stopped", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    serve_until_signalled(parser.parse_args(argv).port)


if __name__ == "__main__":
    main()
