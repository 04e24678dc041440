"""Errors the local stack expects and reports as one line, without a traceback."""


class LocalStackError(Exception):
    """A failure a user can act on: a port taken, a server that did not answer, a missing binary."""


class PortInUseError(LocalStackError):
    """The port a part should listen on already answers, and not as that part."""

    def __init__(self, part: str, port: int, hint: str = ""):
        self.part = part
        self.port = port
        message = f"{part}: port {port} on 127.0.0.1 is already in use by another program"
        super().__init__(f"{message}; {hint}" if hint else message)
