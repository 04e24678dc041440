"""Security, on the real servers:

- no secret anywhere: runs with known secret values (succeeding and failing, password and key-pair
  auth) leave none of them in the event log, run records, metadata, compute logs, console output, the
  UI's view of the code location, or the stage;
- PostgreSQL: the README's GRANTs (a SELECT-only role) are all the pipeline needs, and every statement
  it sends reads, inside read-only transactions;
- TLS to PostgreSQL: with sslmode=verify-full every connection (catalog, extract, locks) verifies the
  server; a server certificate from another CA is refused;
- Snowflake key-pair authentication goes through the connector's JWT path, signed with the given key;
- S3 server-side encryption: on by default in prod (SSE-S3), SSE-KMS with a key id, for single and
  multipart uploads.
"""

import base64
import dataclasses
import hashlib
import ipaddress
import json
import os
import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import boto3
import dagster as dg
import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from dagster_shared.serdes import serialize_value

from datavault_analytics.errors import ConfigurationError
from datavault_analytics.local_stack.postgres_server import PostgresServer
from datavault_analytics.local_stack.processes import free_port
from datavault_analytics.resources import build_resources
from datavault_analytics.settings import Settings
from datavault_analytics.stage.storage import S3StageStorage, StageLocation
from datavault_analytics_tests import records
from datavault_analytics_tests.dagster_internals import RepositorySnap
from datavault_analytics_tests.pipeline_harness import ALL_ASSETS, Pipeline
from datavault_analytics_tests.test_faults.faultkit import HttpProxy, RunProcess, dagster_home

DAY = "2026-11-01"
DAY_DATE = date(2026, 11, 1)


def _secret(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex}"


def rsa_key(passphrase: str | None) -> tuple[rsa.RSAPrivateKey, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    encryption = (
        serialization.BestAvailableEncryption(passphrase.encode())
        if passphrase
        else serialization.NoEncryption()
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    ).decode()
    return key, pem


# -- no secrets anywhere -----------------------------------------------------------------------------


def secret_forms(secrets: list[str]) -> list[str]:
    """Each secret as it could be written: itself, URL-encoded, and each long line of a multi-line one."""
    forms = set()
    for secret in secrets:
        forms |= {secret, quote(secret, safe="")}
        forms |= {line for line in secret.splitlines() if len(line) >= 16 and "-----" not in line}
    return sorted(forms)


def found_in(blob: str | bytes, forms: list[str]) -> list[str]:
    data = blob.encode() if isinstance(blob, str) else blob
    return [form for form in forms if form.encode() in data]


def test_no_secret_reaches_logs_metadata_compute_logs_errors_or_the_ui(
    pipeline, pg_server, tmp_path, monkeypatch
):
    pipeline.seed([DAY_DATE], rows_per_day=50)
    pg_password, sf_password, aws_secret, passphrase = (_secret(k) for k in ("pg", "sf", "aws", "keypass"))
    _, pem = rsa_key(passphrase)
    secrets = [pg_password, sf_password, aws_secret, passphrase, pem]
    forms = secret_forms(secrets)
    home = dagster_home(tmp_path / "dagster_home")
    dead = free_port()
    # The local cluster trusts 127.0.0.1, so any password connects; moto and fakesnow take any credentials.
    base = {
        **pipeline.env,
        "DAGSTER_HOME": str(home),
        "DATAVAULT_MAX_RETRIES": "0",
        "SNOWFLAKE_LOGIN_TIMEOUT": "3",
        "DATAVAULT_PG_DSN": f"postgresql://postgres:{pg_password}@127.0.0.1:{pg_server.port}/{pipeline.database}",
        "SNOWFLAKE_PASSWORD": sf_password,
        "AWS_SECRET_ACCESS_KEY": aws_secret,
    }
    key_pair = {
        "SNOWFLAKE_PASSWORD": "",
        "SNOWFLAKE_PRIVATE_KEY": pem,
        "SNOWFLAKE_PRIVATE_KEY_PASSWORD": passphrase,
    }
    succeeding = {"password": {}, "key pair": key_pair}
    failing = {
        "PostgreSQL down": {
            "DATAVAULT_PG_DSN": f"postgresql://postgres:{pg_password}@127.0.0.1:{dead}/datavault"
        },
        "S3 down": {"DATAVAULT_S3_ENDPOINT_URL": f"http://127.0.0.1:{dead}", "AWS_MAX_ATTEMPTS": "2"},
        "Snowflake down": {"SNOWFLAKE_PORT": str(dead)},
        "wrong key passphrase": {**key_pair, "SNOWFLAKE_PRIVATE_KEY_PASSWORD": _secret("wrong")},
    }

    def run(name: str, overrides: dict) -> RunProcess:
        process = RunProcess({**base, **overrides}, [DAY], tmp_path / f"{name.replace(' ', '-')}.log")
        process.wait(180)
        return process

    outputs = [run(name, env) for name, env in succeeding.items()]  # the first creates the instance's storage
    assert all(p.returncode == 0 for p in outputs), [p.tail() for p in outputs]
    with ThreadPoolExecutor(len(failing)) as pool:
        failed = list(pool.map(lambda item: run(*item), failing.items()))
    assert all(p.returncode == 1 for p in failed), [p.tail() for p in failed]

    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        events = [serialize_value(entry) for r in runs for entry in instance.all_logs(r.run_id)]
        records = [serialize_value(r) for r in runs]
    monkeypatch.setenv("DATAVAULT_PG_DSN", base["DATAVAULT_PG_DSN"])
    for name, value in {
        **key_pair,
        "SNOWFLAKE_PASSWORD": sf_password,
        "AWS_SECRET_ACCESS_KEY": aws_secret,
    }.items():
        monkeypatch.setenv(name, value)
    ui = serialize_value(
        RepositorySnap.from_def(
            dg.Definitions(
                assets=ALL_ASSETS, resources=build_resources(Settings.from_environment("prod"))
            ).get_repository_def()
        )
    )
    files = {str(p): p.read_bytes() for p in home.rglob("*") if p.is_file()}
    consoles = {p.log_path.name: p.output() for p in outputs + failed}
    objects = {
        o["Key"]: pipeline.s3.get_object(Bucket=pipeline.bucket, Key=o["Key"])["Body"].read()
        for o in pipeline.s3.list_objects_v2(Bucket=pipeline.bucket).get("Contents", [])
    }

    # The scan sees what it should: log messages, metadata, errors, compute logs, resource config in the UI.
    all_events = "\n".join(events)
    assert "Staged 2026-11-01" in all_events and "dagster/row_count" in all_events
    assert f"127.0.0.1:{dead}" in all_events  # the failures' messages, which name where
    assert "Cannot connect to PostgreSQL at" in all_events and "S3 is unreachable" in all_events
    assert "Snowflake failed while connecting" in all_events and "Unable to load private key" in all_events
    compute_logs = [name for name in files if "/compute_logs/" in name]
    assert compute_logs and any(b"STEP_START" in files[name] for name in compute_logs)
    assert "DATAVAULT_PG_DSN" in ui and "SNOWFLAKE_PRIVATE_KEY_PASSWORD" in ui
    assert any(key.endswith("_manifest.json") for key in objects)

    leaks = {
        **{f"event {i}": found_in(e, forms) for i, e in enumerate(events)},
        **{f"run record {i}": found_in(r, forms) for i, r in enumerate(records)},
        **{f"file {name}": found_in(data, forms) for name, data in files.items()},
        **{f"console {name}": found_in(text, forms) for name, text in consoles.items()},
        **{f"s3 {key}": found_in(data, forms) for key, data in objects.items()},
        "the UI's code location": found_in(ui, forms),
    }
    assert {where: what for where, what in leaks.items() if what} == {}


def test_no_record_id_or_payload_reaches_dagster_events_even_when_checks_and_the_drift_scan_fail(
    pipeline, monkeypatch
):
    """The erasure section's promise: Dagster's event log holds no record that an erasure must remove."""
    from datavault_analytics.drift.scan import build_drift_scan_job

    pipeline.seed([DAY_DATE], rows_per_day=20)
    with dg.instance_for_test() as instance:
        pipeline.instance = instance
        tags = {"dagster/asset_partition_range_start": DAY, "dagster/asset_partition_range_end": DAY}
        everything = [*ALL_ASSETS, records.CHECKS]
        assert dg.materialize(everything, resources=pipeline.resources, tags=tags, instance=instance).success
        rows = pipeline.pg(
            "SELECT id::text, key, encode(ciphertext, 'hex'), encode(nonce, 'hex') FROM records"
        )
        # A failing content verification by the drift scan, then failing checks: what might name a record.
        pipeline.pg("UPDATE records SET nonce = '\\x00'::bytea WHERE id = %s", (rows[1][0],))
        # The scan job over all of history, in process: its run holds the scan's evaluations.
        table = dataclasses.replace(
            records.RECORDS, drift=records.RECORDS.drift.model_copy(update=dict(hash_days_per_scan=1))
        )
        scan = build_drift_scan_job(table).execute_in_process(
            instance=instance, resources=pipeline.resources, raise_on_error=False
        )
        assert scan.success
        [(duplicated,)] = pipeline.snowflake('SELECT MIN("ID") FROM "RECORDS"')
        pipeline.snowflake('INSERT INTO "RECORDS" SELECT * FROM "RECORDS" WHERE "ID" = %s', (duplicated,))
        only_checks = dg.AssetSelection.checks_for_assets(records.SNOWFLAKE_KEY)
        dg.materialize(
            everything,
            resources=pipeline.resources,
            tags=tags,
            instance=instance,
            selection=only_checks,
            raise_on_error=False,
        )
        run_ids = [r.run_id for r in instance.get_runs()]
        events = [serialize_value(e) for run_id in run_ids for e in instance.all_logs(run_id)]
    assert len(run_ids) == 3 and len(events) > 50
    blob = "\n".join(events).lower()
    # The scanned events hold the failures: the duplicate, the count and the content that differ.
    assert "1 id(s) appear more than once" in blob and "drift scan" in blob
    assert blob.count("content fingerprint differs") >= 2  # the scan's evaluation and the check's
    found = [value for row in rows for value in row if value.lower() in blob]
    assert found == []


# -- PostgreSQL: a SELECT-only role, read-only transactions ------------------------------------------

README_GRANTS = """
CREATE ROLE {role} LOGIN PASSWORD '{password}';
GRANT CONNECT ON DATABASE {database} TO {role};
GRANT USAGE ON SCHEMA public TO {role};
GRANT SELECT ON public.records TO {role};
ALTER ROLE {role} SET default_transaction_read_only = on;
"""
_LOG_ENTRY = re.compile(r"^\S+ \S+ \S+ \[(?P<pid>\d+)\] LOG:  (?:statement|execute [^:]*): (?P<sql>.*)$")
READ_STATEMENTS = re.compile(
    r"^(?:(?:BEGIN|SET|SELECT|SHOW|COMMIT|ROLLBACK|DEALLOCATE|FETCH|CLOSE)\b|COPY \(SELECT|EXPLAIN (?!.*\bANALYZE\b)"
    r"|DECLARE \S+ (?:NO SCROLL )?CURSOR (?:WITHOUT HOLD )?FOR SELECT\b)",
    re.I,
)


def statements_in_log(log_path: Path, offset: int) -> list[tuple[int, str]]:
    """(pid, statement) for each statement logged since offset; continuation lines joined."""
    entries: list[tuple[int, str]] = []
    with open(log_path, errors="replace") as log:
        log.seek(offset)
        for line in log:
            if match := _LOG_ENTRY.match(line.rstrip("\n")):
                entries.append((int(match["pid"]), match["sql"]))
            elif line.startswith("\t") and entries and "LOG:" not in line:
                entries[-1] = (entries[-1][0], entries[-1][1] + " " + line.strip())
    return [(pid, sql.strip()) for pid, sql in entries]


def test_a_select_only_role_in_read_only_transactions_is_all_the_pipeline_needs(
    pipeline, pg_server, monkeypatch
):
    pipeline.seed([DAY_DATE], rows_per_day=60)
    role, password = f"datavault_reader_{uuid.uuid4().hex[:8]}", _secret("reader")
    pipeline.pg(README_GRANTS.format(role=role, password=password, database=pipeline.database))
    pipeline.pg(f"ALTER ROLE {role} SET log_statement = 'all'")  # the server logs every statement it sends
    try:
        privileges = pipeline.pg(
            "SELECT has_table_privilege(%(r)s, 'public.records', 'INSERT, UPDATE, DELETE, TRUNCATE, "
            "REFERENCES, TRIGGER'), has_schema_privilege(%(r)s, 'public', 'CREATE'), "
            "has_database_privilege(%(r)s, "
            "current_database(), 'CREATE')",
            {"r": role},
        )
        assert privileges == [(False, False, False)]
        monkeypatch.setenv(
            "DATAVAULT_PG_DSN",
            f"postgresql://{role}:{password}@127.0.0.1:{pg_server.port}/{pipeline.database}",
        )
        pipeline.resources = build_resources(Settings.from_environment("prod"))
        offset = pg_server.log_path.stat().st_size

        assert pipeline.materialize(DAY).success

        assert pipeline.snowflake_rows(DAY) == pipeline.source_rows(DAY)
        statements = statements_in_log(pg_server.log_path, offset)
        assert statements, "log_statement should have logged the role's statements"
        writes = [sql for _, sql in statements if not READ_STATEMENTS.match(sql)]
        assert writes == []
        # The catalog query and the extract run inside read-only transactions, the extract in one snapshot.
        last_begin: dict[int, str] = {}
        reads = []
        for pid, sql in statements:
            if sql.upper().startswith("BEGIN"):
                last_begin[pid] = sql.upper()
            elif '"records"' in sql or "FROM pg_catalog.pg_attribute a" in sql:
                reads.append(sql.split()[0].upper())
                assert "READ ONLY" in last_begin.get(pid, ""), f"{sql} ran outside a read-only transaction"
                if sql.upper().startswith(("COPY", "DECLARE")):  # a day's rows, a day's fingerprint
                    assert "REPEATABLE READ" in last_begin[pid]
        assert {"SELECT", "DECLARE"} <= set(reads)  # the table's columns, the day's rows (in bursts)
    finally:
        pipeline.pg(f"DROP OWNED BY {role}; DROP ROLE {role}")


# -- TLS to PostgreSQL -------------------------------------------------------------------------------


def _certificate_authority(name: str):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _server_certificate(ca_key, ca_cert):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


@pytest.fixture
def tls_postgres(tmp_path):
    """A PostgreSQL cluster that accepts TLS connections only, and the CA file that verifies it."""
    server = PostgresServer(tmp_path / "pg", free_port(), log_path=tmp_path / "pg.log", durable=False)
    server.start()
    ca_key, ca_cert = _certificate_authority("DataVault test CA")
    key, cert = _server_certificate(ca_key, ca_cert)
    files = {
        "server.crt": cert.public_bytes(serialization.Encoding.PEM),
        "server.key": key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        ),
    }
    for name, data in files.items():
        path = server.data_dir / name
        path.write_bytes(data)
        path.chmod(0o600)
        if server.os_user:
            import pwd

            user = pwd.getpwnam(server.os_user)
            os.chown(path, user.pw_uid, user.pw_gid)
    (server.data_dir / "pg_hba.conf").write_text(
        "hostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n"
    )
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET ssl = on")
        conn.execute("SELECT pg_reload_conf()")
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    try:
        yield server, ca_file
    finally:
        server.stop()


def test_postgres_connections_verify_the_server_with_tls(
    tls_postgres, s3_endpoint, snowflake_server, monkeypatch, tmp_path
):
    server, ca_file = tls_postgres
    pipeline = Pipeline(server, s3_endpoint, snowflake_server, monkeypatch)
    pipeline.seed([DAY_DATE], rows_per_day=40)
    monkeypatch.setenv("DATAVAULT_LOCK_WAIT_SECONDS", "60")

    # The server refuses a connection without TLS: whatever succeeds below used TLS.
    with pytest.raises(psycopg.OperationalError, match="no encryption"):
        psycopg.connect(server.dsn() + "?sslmode=disable", connect_timeout=5)

    monkeypatch.setenv("DATAVAULT_PG_SSLMODE", "verify-full")
    monkeypatch.setenv("DATAVAULT_PG_SSLROOTCERT", str(ca_file))
    pipeline.resources = build_resources(Settings.from_environment("prod"))
    assert pipeline.materialize(DAY).success
    assert pipeline.snowflake_rows(DAY) == pipeline.source_rows(DAY)

    # A server certificate that the configured CA did not sign is refused, and the error says where.
    _, other_ca = _certificate_authority("Someone else's CA")
    other_file = tmp_path / "other-ca.pem"
    other_file.write_bytes(other_ca.public_bytes(serialization.Encoding.PEM))
    monkeypatch.setenv("DATAVAULT_PG_SSLROOTCERT", str(other_file))
    pipeline.resources = build_resources(Settings.from_environment("prod"))
    result = pipeline.materialize(DAY, raise_on_error=False)
    assert not result.success
    message = [e for e in result.all_events if e.is_step_failure][0].step_failure_data.error.to_string()
    assert f"Cannot connect to PostgreSQL at 127.0.0.1:{server.port}/{pipeline.database}" in message
    assert "certificate verify failed" in message


def test_an_unknown_sslmode_is_refused(pipeline, monkeypatch):
    monkeypatch.setenv("DATAVAULT_PG_SSLMODE", "on")
    pipeline.resources = build_resources(Settings.from_environment("prod"))
    result = pipeline.materialize(DAY, raise_on_error=False)
    assert not result.success
    assert not [e for e in result.all_events if e.is_step_up_for_retry]
    message = [e for e in result.all_events if e.is_step_failure][0].step_failure_data.error.to_string()
    assert (
        "postgres.sslmode='on' is not one of disable, allow, prefer, require, verify-ca, verify-full"
        in message
    )


# -- Snowflake: TLS settings, key-pair authentication ------------------------------------------------


def test_snowflake_is_reached_over_https_except_for_an_emulator_on_this_machine(pipeline, monkeypatch):
    monkeypatch.setenv("SNOWFLAKE_HOST", "xy12345.eu-west-1.privatelink.snowflakecomputing.com")
    monkeypatch.setenv("SNOWFLAKE_PROTOCOL", "http")
    with pytest.raises(ConfigurationError, match="only allowed for an emulator on this machine"):
        build_resources(Settings.from_environment("prod"))
    monkeypatch.setenv("SNOWFLAKE_PROTOCOL", "https")
    monkeypatch.setenv("SNOWFLAKE_OCSP_FAIL_OPEN", "false")
    args = build_resources(Settings.from_environment("prod"))[
        "snowflake"
    ].additional_snowflake_connection_args
    assert args["protocol"] == "https" and args["ocsp_fail_open"] is False


def test_a_private_key_that_does_not_load_fails_before_anything_is_written(pipeline, monkeypatch):
    pipeline.seed([DAY_DATE], rows_per_day=20)
    _, pem = rsa_key(_secret("keypass"))
    monkeypatch.setenv("SNOWFLAKE_PRIVATE_KEY", pem)
    monkeypatch.setenv("SNOWFLAKE_PRIVATE_KEY_PASSWORD", _secret("wrong"))
    pipeline.resources = build_resources(Settings.from_environment("prod"))
    result = pipeline.materialize(DAY, raise_on_error=False)
    assert not result.success
    assert not [e for e in result.all_events if e.is_step_up_for_retry]
    message = [e for e in result.all_events if e.is_step_failure][0].step_failure_data.error.to_string()
    assert (
        "The Snowflake connection settings cannot work (account fakesnow at 127.0.0.1): Unable to load "
        "private key" in message
    )
    assert pipeline.s3.list_objects_v2(Bucket=pipeline.bucket).get("KeyCount") == 0  # not even staged


def _verify_jwt(token: str, key: rsa.RSAPrivateKey) -> dict:
    header, payload, signature = token.split(".")
    pad = lambda part: part + "=" * (-len(part) % 4)  # noqa: E731
    key.public_key().verify(
        base64.urlsafe_b64decode(pad(signature)),
        f"{header}.{payload}".encode(),
        padding.PKCS1v15(),
        hashes.SHA256(),
    )
    assert json.loads(base64.urlsafe_b64decode(pad(header)))["alg"] == "RS256"
    return json.loads(base64.urlsafe_b64decode(pad(payload)))


@pytest.mark.parametrize("how", ["SNOWFLAKE_PRIVATE_KEY", "SNOWFLAKE_PRIVATE_KEY_PATH"])
def test_key_pair_authentication_signs_a_jwt_with_the_configured_key(
    pipeline, snowflake_server, monkeypatch, tmp_path, how
):
    pipeline.seed([DAY_DATE], rows_per_day=20)
    passphrase = _secret("keypass")
    key, pem = rsa_key(passphrase)
    if how == "SNOWFLAKE_PRIVATE_KEY_PATH":
        (tmp_path / "rsa_key.p8").write_text(pem)
        monkeypatch.setenv(how, str(tmp_path / "rsa_key.p8"))
    else:
        monkeypatch.setenv(how, pem)
    monkeypatch.setenv("SNOWFLAKE_PRIVATE_KEY_PASSWORD", passphrase)
    monkeypatch.delenv("SNOWFLAKE_PASSWORD")
    with HttpProxy(f"http://{snowflake_server.host}:{snowflake_server.port}") as proxy:
        monkeypatch.setenv("SNOWFLAKE_PORT", str(proxy.port))
        pipeline.resources = build_resources(Settings.from_environment("prod"))
        assert pipeline.materialize(DAY).success
        logins = [r.json["data"] for r in proxy.requests if "/session/v1/login-request" in r.path]
    assert pipeline.snowflake_rows(DAY) == pipeline.source_rows(DAY)

    assert logins, "the runs should have logged in through the proxy"
    fingerprint = base64.b64encode(
        hashlib.sha256(
            key.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        ).digest()
    ).decode()
    for login in logins:
        assert login["AUTHENTICATOR"] == "SNOWFLAKE_JWT"
        assert not login.get("PASSWORD")
        claims = _verify_jwt(login["TOKEN"], key)
        assert claims["sub"] == "FAKESNOW.LOADER"
        assert claims["iss"] == f"FAKESNOW.LOADER.SHA256:{fingerprint}"


# -- S3 server-side encryption -----------------------------------------------------------------------


def _encryption(pipeline) -> dict[str, tuple[str | None, str | None]]:
    keys = [o["Key"] for o in pipeline.s3.list_objects_v2(Bucket=pipeline.bucket)["Contents"]]
    heads = {k: pipeline.s3.head_object(Bucket=pipeline.bucket, Key=k) for k in keys}
    return {k: (h.get("ServerSideEncryption"), h.get("SSEKMSKeyId")) for k, h in heads.items()}


def test_staged_objects_are_encrypted_with_sse_s3_by_default_in_prod(pipeline):
    pipeline.seed([DAY_DATE], rows_per_day=20)
    assert pipeline.materialize(DAY).success
    encryption = _encryption(pipeline)
    assert sorted(k.rsplit("/", 1)[1][:10] for k in encryption) == ["_manifest.", "part-00000"]
    assert set(encryption.values()) == {("AES256", None)}


def test_staged_objects_use_sse_kms_with_the_configured_key(pipeline, monkeypatch):
    kms = boto3.client(
        "kms",
        endpoint_url=pipeline.s3_endpoint,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
    )
    key_id = kms.create_key(Description="datavault stage")["KeyMetadata"]["KeyId"]
    monkeypatch.setenv("DATAVAULT_S3_SSE", "aws:kms")
    monkeypatch.setenv("DATAVAULT_S3_SSE_KMS_KEY_ID", key_id)
    pipeline.resources = build_resources(Settings.from_environment("prod"))
    pipeline.seed([DAY_DATE], rows_per_day=20)
    assert pipeline.materialize(DAY).success
    for sse, kms_key in _encryption(pipeline).values():
        assert sse == "aws:kms" and kms_key.endswith(key_id)
    # A multipart upload (a staged file past 16 MiB) carries the same settings.
    storage = S3StageStorage(
        StageLocation.parse(pipeline.stage_uri),
        pipeline.s3,
        {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": key_id},
    )
    with storage.open_writer("records/big.bin") as sink:
        sink.write(os.urandom(17 * 1024 * 1024))
    head = pipeline.s3.head_object(Bucket=pipeline.bucket, Key="analytics/records/big.bin")
    assert head["ContentLength"] == 17 * 1024 * 1024 and head.get("PartsCount", 2) >= 2
    assert head["ServerSideEncryption"] == "aws:kms" and head["SSEKMSKeyId"].endswith(key_id)


@pytest.mark.parametrize(
    ("environment", "sse", "key", "expected"),
    [
        ("prod", None, None, ("AES256", None)),
        ("local", None, None, (None, None)),
        ("prod", "none", None, (None, None)),
        ("prod", "aws:kms", "alias/datavault-stage", ("aws:kms", "alias/datavault-stage")),
        ("prod", "AES-256", None, "is not one of AES256, aws:kms, aws:kms:dsse or none"),
        ("prod", "AES256", "alias/datavault-stage", "needs DATAVAULT_S3_SSE=aws:kms"),
    ],
)
def test_s3_encryption_settings(pipeline, monkeypatch, environment, sse, key, expected):
    for name, value in (("DATAVAULT_S3_SSE", sse), ("DATAVAULT_S3_SSE_KMS_KEY_ID", key)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    if isinstance(expected, str):
        with pytest.raises(ConfigurationError, match=re.escape(expected)):
            Settings.from_environment(environment)
    else:
        settings = Settings.from_environment(environment)
        assert (settings.s3_sse, settings.s3_sse_kms_key_id) == expected
