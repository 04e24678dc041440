"""A local webhook receiver for the alert tests."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class Receiver:
    """A webhook receiver: records each JSON body; while `down`, answers 503."""

    def __init__(self):
        self.bodies: list[dict] = []
        self.refused = 0  # POSTs answered 503 while down
        self.down = False
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.down:
                    receiver.refused += 1
                    self.send_response(503)
                else:
                    receiver.bodies.append(json.loads(body))
                    self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/services/T000/B000/secret-token"

    def causes(self) -> list[tuple[str, str, str]]:
        return sorted(
            (b["datavault"]["cause"], b["datavault"]["table"], b["datavault"]["day"]) for b in self.bodies
        )


@pytest.fixture
def receiver():
    found = Receiver()
    yield found
    found.server.shutdown()
