"""The soak's fault proxy in front of a real S3 (moto), reached with boto3 as the pipeline does."""

import time

import boto3
import botocore.config
import botocore.exceptions
import pytest

from datavault_analytics.local_stack.s3_server import LOCAL_S3_CREDENTIALS
from soak.proxy import FaultProxy

BODY = bytes(range(256)) * 4096  # 1 MiB: several chunks through the proxy


@pytest.fixture
def s3_through_proxy(s3_endpoint):
    port = int(s3_endpoint.rsplit(":", 1)[1])
    proxy = FaultProxy("s3", port).start()
    config = botocore.config.Config(
        retries={"max_attempts": 1, "mode": "standard"}, read_timeout=2, connect_timeout=2
    )
    client = boto3.client("s3", endpoint_url=proxy.url, config=config, **LOCAL_S3_CREDENTIALS)
    direct = boto3.client("s3", endpoint_url=s3_endpoint, **LOCAL_S3_CREDENTIALS)
    direct.create_bucket(Bucket="proxied")
    direct.put_object(Bucket="proxied", Key="k", Body=BODY)
    yield proxy, client
    proxy.stop()


def read(client) -> bytes:
    return client.get_object(Bucket="proxied", Key="k")["Body"].read()


def test_it_forwards_until_a_fault_and_again_after_the_heal(s3_through_proxy):
    proxy, client = s3_through_proxy
    assert read(client) == BODY
    proxy.inject("http503")
    with pytest.raises(botocore.exceptions.ClientError, match="503"):
        read(client)
    proxy.heal()
    assert read(client) == BODY


def test_a_reset_cuts_the_answer_in_the_middle(s3_through_proxy):
    proxy, client = s3_through_proxy
    proxy.inject("reset")
    with pytest.raises((botocore.exceptions.BotoCoreError, ConnectionError)):
        assert read(client) == BODY  # a short body is an error too


def test_a_blackhole_answers_nothing_until_healed(s3_through_proxy):
    proxy, client = s3_through_proxy
    proxy.inject("blackhole")
    started = time.monotonic()
    with pytest.raises(botocore.exceptions.BotoCoreError):
        read(client)
    assert time.monotonic() - started >= 2  # the client's read timeout, not a refusal
    proxy.heal()
    assert read(client) == BODY


def test_latency_delays_every_chunk(s3_through_proxy):
    proxy, client = s3_through_proxy
    proxy.inject("latency", latency_seconds=0.3)
    started = time.monotonic()
    assert read(client) == BODY
    assert time.monotonic() - started >= 0.6  # the request and at least one chunk of the answer


def test_a_lost_peer_frees_its_postgres_session_at_once_while_its_client_hears_nothing(pg_server):
    """`lost`, in front of a real PostgreSQL: a session holding an advisory lock through the proxy loses it at
    once (the server sees the connection end), while the session's own next statement gets no answer until the
    heal, then fails. What a run holding a day's lock meets when its node drops off the network."""
    import threading

    import psycopg

    proxy = FaultProxy("postgres", pg_server.port).start()
    direct = pg_server.dsn("postgres")
    proxied = direct.replace(f":{pg_server.port}/", f":{proxy.port}/")
    assert proxied != direct
    holder = psycopg.connect(proxied, autocommit=True)
    holder.execute("SELECT pg_advisory_lock(4242)")
    with psycopg.connect(direct, autocommit=True) as other:
        assert not other.execute("SELECT pg_try_advisory_lock(4242)").fetchone()[0]
        proxy.inject("lost")
        deadline = time.monotonic() + 10
        while not other.execute("SELECT pg_try_advisory_lock(4242)").fetchone()[0]:
            assert time.monotonic() < deadline, "the lost session's lock was not freed"
            time.sleep(0.1)

        outcome: list[object] = []
        asking = threading.Thread(target=lambda: outcome.append(_try(holder.execute, "SELECT 1")))
        asking.start()
        asking.join(2)
        assert asking.is_alive() and outcome == []  # no answer, no error: the network is silent
        proxy.heal()
        asking.join(10)
        assert isinstance(outcome[0], psycopg.OperationalError)  # then the connection is gone
    holder.close()
    proxy.stop()


def _try(action, *args) -> object:
    try:
        return action(*args)
    except Exception as error:  # returned for the assertion
        return error
