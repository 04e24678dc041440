"""The day locks' sessions on the real cluster: PostgreSQL itself watches the holder's connection."""

import random
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from datavault_analytics.local_stack.postgres_server import PostgresServer
from datavault_analytics.local_stack.processes import free_port
from datavault_analytics.postgres.locks import (
    KEEPALIVE_COUNT,
    KEEPALIVE_IDLE_S,
    KEEPALIVE_INTERVAL_S,
    PartitionLocks,
)
from datavault_analytics_tests.records import RECORDS_SPEC

ROOT = Path(__file__).resolve().parents[2]


def test_the_lock_session_sets_the_servers_keepalives_to_a_minute_and_keeps_the_dsns_options(pipeline):
    """A holder whose machine disappears sends no FIN: only the server's TCP keepalives free its lock. They
    are set per session (the server's defaults are Linux's 2 h 11 min), with the DSN's own options kept. The
    lost machine itself is the next test."""
    with pipeline.configured("partition_locks") as built:
        locks = built.partition_locks.model_copy(
            update={
                "dsn": pipeline.dsn
                + ("&" if "?" in pipeline.dsn else "?")
                + "options=-c%20search_path%3Dpublic"
            }
        )
        with locks.hold("2026-11-01", holder="keepalive test") as lock:
            shown = {
                name: lock.conn.execute(f"SHOW {name}").fetchone()[0]
                for name in (
                    "tcp_keepalives_idle",
                    "tcp_keepalives_interval",
                    "tcp_keepalives_count",
                    "search_path",
                )
            }
            peer = lock.conn.execute("SELECT inet_client_addr() IS NOT NULL").fetchone()[0]
    assert peer, "the lock's session must be over TCP for keepalives to apply"
    assert shown == {
        "tcp_keepalives_idle": str(KEEPALIVE_IDLE_S),
        "tcp_keepalives_interval": str(KEEPALIVE_INTERVAL_S),
        "tcp_keepalives_count": str(KEEPALIVE_COUNT),
        "search_path": "public",
    }
    assert KEEPALIVE_IDLE_S + KEEPALIVE_INTERVAL_S * KEEPALIVE_COUNT <= 60


HOLDER = """
import sys, time
from datavault_analytics.postgres.locks import PartitionLocks
from datavault_analytics_tests.records import RECORDS_SPEC

with PartitionLocks(dsn=sys.argv[1]).for_table(RECORDS_SPEC).hold(sys.argv[2], holder="lost node"):
    print("held", flush=True)
    time.sleep(3600)
"""


class Node:
    """A machine of its own on this host's network: a network namespace joined by a veth pair. Losing it
    takes its end of the link down, so its packets are dropped, as when a node dies: no FIN, no RST."""

    def __init__(self) -> None:
        self.name = f"dvlost{uuid.uuid4().hex[:6]}"
        subnet = random.randrange(1, 250)
        self.host_address, self.address = f"10.213.{subnet}.1", f"10.213.{subnet}.2"
        self.network = f"10.213.{subnet}.0/30"
        self.host_link, self.link = f"{self.name[:9]}h", f"{self.name[:9]}n"

    def create(self) -> None:
        for command in (
            f"ip netns add {self.name}",
            f"ip link add {self.host_link} type veth peer name {self.link}",
            f"ip link set {self.link} netns {self.name}",
            f"ip addr add {self.host_address}/30 dev {self.host_link}",
            f"ip link set {self.host_link} up",
            f"ip netns exec {self.name} ip addr add {self.address}/30 dev {self.link}",
            f"ip netns exec {self.name} ip link set {self.link} up",
            f"ip netns exec {self.name} ip link set lo up",
        ):
            subprocess.run(command.split(), check=True, capture_output=True)

    def run(self, *command: str) -> subprocess.Popen:
        return subprocess.Popen(
            ["ip", "netns", "exec", self.name, *command], stdout=subprocess.PIPE, text=True, cwd=ROOT
        )

    def lose(self) -> None:
        subprocess.run(
            ["ip", "netns", "exec", self.name, "ip", "link", "set", self.link, "down"],
            check=True,
            capture_output=True,
        )

    def remove(self) -> None:
        subprocess.run(["ip", "link", "del", self.host_link], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


@pytest.fixture
def lost_node() -> Iterator[Node]:
    node = Node()
    try:
        node.create()
        yield node
    finally:
        node.remove()


def test_a_day_lock_whose_holders_node_is_lost_is_free_within_a_minute(lost_node, tmp_path):
    """A run's node dies holding a day's lock: its packets are dropped from then on. PostgreSQL's own TCP
    keepalives and user timeout on the lock's session (set by the session) end it, and the lock with it,
    within KEEPALIVE_IDLE_S + KEEPALIVE_INTERVAL_S x KEEPALIVE_COUNT seconds (Linux's defaults would take
    2 h 11 min, or about 15 min of retransmissions for a reply in flight)."""
    server = PostgresServer(
        tmp_path / "data",
        free_port(),
        durable=False,
        listen_addresses=("127.0.0.1", lost_node.host_address),
        trusted_networks=(lost_node.network,),
    )
    server.start()
    holder = None
    try:
        locks = PartitionLocks(dsn=server.dsn()).for_table(RECORDS_SPEC)
        holder = lost_node.run(
            sys.executable,
            "-c",
            HOLDER,
            f"postgresql://postgres@{lost_node.host_address}:{server.port}/postgres",
            "2026-11-03",
        )
        assert holder.stdout.readline().strip() == "held"
        with locks.try_hold("2026-11-03", holder="test") as lock:
            assert lock is None  # held by the node

        lost_node.lose()
        lost = time.monotonic()
        bound = KEEPALIVE_IDLE_S + KEEPALIVE_INTERVAL_S * KEEPALIVE_COUNT
        freed_after = None
        while time.monotonic() - lost < bound + 30:
            with locks.try_hold("2026-11-03", holder="test") as lock:
                if lock is not None:
                    freed_after = time.monotonic() - lost
                    break
            time.sleep(1)
        assert holder.poll() is None  # the holder never ended its session: its node was lost
    finally:
        if holder is not None:
            holder.kill()
            holder.wait(timeout=10)
        server.stop()
    assert freed_after is not None, f"the lock was still held {bound + 30} s after its node was lost"
    # freed by the keepalives, not earlier by anything that told the server the peer was gone
    assert KEEPALIVE_IDLE_S <= freed_after <= bound + 5, freed_after
