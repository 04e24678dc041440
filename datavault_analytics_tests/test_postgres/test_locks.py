"""The day locks' sessions on the real cluster: PostgreSQL itself watches the holder's connection."""

from datavault_analytics.postgres.locks import KEEPALIVE_COUNT, KEEPALIVE_IDLE_S, KEEPALIVE_INTERVAL_S


def test_the_lock_session_sets_the_servers_keepalives_to_a_minute_and_keeps_the_dsns_options(pipeline):
    """A holder whose machine disappears sends no FIN: only the server's TCP keepalives free its lock. They
    are set per session (the server's defaults are Linux's 2 h 11 min), with the DSN's own options kept. A
    lost machine itself (packets dropped, not refused) is not simulated here: this kernel has no netem and the
    machine no iptables."""
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
