"""The alert receiver: a webhook like Slack's on 127.0.0.1 that keeps every alert the pipeline POSTs to it, and
that the nemesis can take down (HTTP 503) so that the alert sensor has to send again what was not taken.

Its URL carries the soak's canary in its path, as a Slack webhook's path is its secret: the checker's scan for
the canary then also proves the URL is never logged."""

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class AlertReceiver:
    secret_path: str
    received: list[dict] = field(default_factory=list)
    down: bool = False
    refused: int = 0  # POSTs answered 503 while down
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> "AlertReceiver":
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path != f"/{receiver.secret_path}":
                    self.send_response(404)
                elif receiver.down:
                    with receiver._lock:
                        receiver.refused += 1
                    self.send_response(503)
                else:
                    with receiver._lock:
                        receiver.received.append(json.loads(body)["datavault"])
                    self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:  # the soak's output is its own
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, name="alert-receiver", daemon=True).start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/{self.secret_path}"

    def alerts(self, cause: str) -> list[dict]:
        with self._lock:
            return [a for a in self.received if a["cause"] == cause]

    def take_down(self) -> None:
        self.down = True

    def bring_up(self) -> None:
        self.down = False

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
