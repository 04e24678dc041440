"""A TCP proxy on 127.0.0.1 in front of one server (moto's S3, the Snowflake emulator, the day locks'
PostgreSQL), with the network faults of the nemesis: latency, a reset in the middle of a response, HTTP 503,
a blackhole, and a lost peer (`lost`: the server sees every connection end at once, while its clients hear
nothing more until the heal, as when the client's node drops off the network and the server's keepalives
give up on it).

`tc netem` is not in these kernels and no toxiproxy server can be installed, so this stands in for both.
A fault applies to new connections and to the bytes still flowing on open ones, until `heal()`.
"""

import asyncio
import socket
import struct
import threading
from dataclasses import dataclass

MODES = ("pass", "latency", "reset", "http503", "blackhole", "lost")
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Fault:
    mode: str = "pass"
    latency_seconds: float = 0.0


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0), as a dropped connection or a crashed peer does."""
    sock = writer.get_extra_info("socket")
    try:
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    writer.transport.abort()


class FaultProxy:
    def __init__(self, name: str, upstream_port: int, port: int = 0):
        self.name, self.upstream_port, self.port = name, upstream_port, port
        self.fault = Fault()
        self.connections = 0
        self._upstreams: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"proxy-{name}", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "FaultProxy":
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True), self._loop
        )
        self._server = future.result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)  # ended, not destroyed while pending

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def inject(self, mode: str, latency_seconds: float = 0.0) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown proxy fault {mode!r}; one of {MODES}")
        self.fault = Fault(mode, latency_seconds)
        if mode == "lost":
            self._loop.call_soon_threadsafe(self._sever_upstreams)

    def _sever_upstreams(self) -> None:
        for upstream in list(self._upstreams):
            _reset(upstream)  # the server sees its peer gone

    def heal(self) -> None:
        self.fault = Fault()

    # -- connections ---------------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        fault = self.fault
        try:
            if fault.mode == "http503":
                await self._answer_503(reader, writer)
                return
            if fault.mode in ("blackhole", "lost"):
                await self._hold_while(fault.mode)
                _reset(writer)
                return
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            except OSError:
                _reset(writer)  # the server is down: the client sees its connection refused, as it would
                return
            self._upstreams.add(up_writer)
            try:
                await asyncio.gather(
                    self._pump(reader, up_writer, toward_client=False),
                    self._pump(up_reader, writer, toward_client=True),
                    return_exceptions=True,
                )
            finally:
                self._upstreams.discard(up_writer)
                up_writer.transport.abort()
        except (OSError, asyncio.CancelledError):
            _reset(writer)

    async def _answer_503(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        writer.write(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nRetry-After: 1\r\n"
            b"Content-Length: 19\r\nConnection: close\r\n\r\nService Unavailable"
        )
        await writer.drain()
        writer.close()

    async def _hold_while(self, mode: str) -> None:
        while self.fault.mode == mode:
            await asyncio.sleep(0.1)

    async def _pump(self, source: asyncio.StreamReader, target: asyncio.StreamWriter, toward_client: bool):
        try:
            while chunk := await source.read(_CHUNK):
                fault = self.fault
                if fault.mode == "latency":
                    await asyncio.sleep(fault.latency_seconds)
                elif fault.mode == "blackhole":
                    await self._hold_while("blackhole")
                    break
                elif fault.mode in ("reset", "http503") and toward_client:
                    target.write(chunk[: max(1, len(chunk) // 2)])  # part of the body, then the reset
                    await target.drain()
                    break
                target.write(chunk)
                await target.drain()
            else:
                if toward_client and self.fault.mode == "lost":
                    await self._hold_while("lost")  # the client hears nothing until the heal
                    _reset(target)
                elif target.can_write_eof():
                    target.write_eof()
                return
            _reset(target)
        except OSError:
            if toward_client and self.fault.mode == "lost":
                await self._hold_while("lost")
            _reset(target)
        except asyncio.CancelledError:
            _reset(target)
