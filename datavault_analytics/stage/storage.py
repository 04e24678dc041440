"""Where staged files live: S3 (through dagster-aws's S3Resource client) or a local folder (file://).

Writes are all-or-nothing at the key: an S3 multipart upload only appears when completed, and a local
file is written under a temporary name and renamed. A run killed mid-file leaves nothing at its key.
"""

import os
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from botocore.exceptions import ClientError

PART_BYTES = (
    8 * 1024 * 1024
)  # S3 multipart part size (S3's minimum is 5 MiB); also the unit of upload concurrency
MAX_PARTS_IN_FLIGHT = 4  # bounds memory held by uploads to 4 x 8 MiB


@dataclass(frozen=True)
class StageLocation:
    """A parsed stage URI: `s3://bucket/prefix` or `file:///abs/path`."""

    uri: str
    scheme: str
    bucket: str
    prefix: str

    @classmethod
    def parse(cls, uri: str) -> "StageLocation":
        parts = urlsplit(uri)
        if parts.scheme == "s3" and parts.netloc:
            return cls(uri.rstrip("/"), "s3", parts.netloc, parts.path.strip("/"))
        if parts.scheme == "file" and parts.path.startswith("/"):
            return cls(uri.rstrip("/"), "file", "", parts.path.rstrip("/"))
        raise ValueError(
            f"DATAVAULT_STAGE_URI={uri!r} is not a stage URI: use s3://bucket/prefix, or "
            "file:///absolute/path for a local stage."
        )

    def key(self, relative: str) -> str:
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def uri_of(self, relative: str) -> str:
        if self.scheme == "s3":
            return f"s3://{self.bucket}/{self.key(relative)}"
        return f"file://{self.prefix}/{relative}"


class StageStorage(Protocol):
    location: StageLocation

    def open_writer(self, relative: str): ...
    def write_bytes(self, relative: str, data: bytes) -> None: ...
    def read_bytes(self, relative: str) -> bytes | None: ...
    def sizes(self, relative_prefix: str) -> dict[str, int]: ...
    def delete(self, relatives: list[str]) -> None: ...


class _S3MultipartWriter:
    """A write-only file object that uploads parts of about 8 MiB in background threads.

    Parquet encoding (which releases the GIL) goes on while earlier parts upload. Small files go up
    with one PutObject at close. Writes are kept as they come and joined once per part: each byte is
    copied once here.
    """

    def __init__(self, client, bucket: str, key: str, extra_args: dict, pool: ThreadPoolExecutor):
        self._client, self._bucket, self._key, self._extra = client, bucket, key, extra_args
        self._pool = pool
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._upload_id: str | None = None
        self._parts: list[Future] = []
        self._in_flight = threading.BoundedSemaphore(MAX_PARTS_IN_FLIGHT)
        self._position = 0
        self.closed = False

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def write(self, data) -> int:
        chunk = bytes(data)  # pyarrow hands over bytes already: no copy then
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        self._position += len(chunk)
        if self._buffered >= PART_BYTES:  # a part may run past PART_BYTES by one write; S3 allows any size
            self._send_part(self._take_buffered())
        return len(chunk)

    def _take_buffered(self) -> bytes:
        body = b"".join(self._chunks)
        self._chunks, self._buffered = [], 0
        return body

    def flush(self) -> None:
        pass

    def _send_part(self, body: bytes) -> None:
        if self._upload_id is None:
            self._upload_id = self._client.create_multipart_upload(
                Bucket=self._bucket, Key=self._key, **self._extra
            )["UploadId"]
        number = len(self._parts) + 1
        self._in_flight.acquire()

        def upload() -> dict:
            try:
                response = self._client.upload_part(
                    Bucket=self._bucket, Key=self._key, UploadId=self._upload_id, PartNumber=number, Body=body
                )
                return {"PartNumber": number, "ETag": response["ETag"]}
            finally:
                self._in_flight.release()

        self._parts.append(self._pool.submit(upload))

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._upload_id is None:
            self._client.put_object(
                Bucket=self._bucket, Key=self._key, Body=self._take_buffered(), **self._extra
            )
            return
        try:
            if self._chunks:
                self._send_part(self._take_buffered())
            parts = [f.result() for f in self._parts]
            self._client.complete_multipart_upload(
                Bucket=self._bucket, Key=self._key, UploadId=self._upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        self.closed = True
        for future in self._parts:
            future.cancel()
        if self._upload_id is not None:
            try:
                self._client.abort_multipart_upload(
                    Bucket=self._bucket, Key=self._key, UploadId=self._upload_id
                )
            except Exception:  # best effort; a lifecycle rule cleans abandoned uploads
                pass


class S3StageStorage:
    def __init__(self, location: StageLocation, client, extra_put_args: dict | None = None):
        self.location = location
        self._client = client
        self._extra = extra_put_args or {}
        self._pool = ThreadPoolExecutor(max_workers=MAX_PARTS_IN_FLIGHT, thread_name_prefix="s3-upload")

    @contextmanager
    def open_writer(self, relative: str) -> Iterator[_S3MultipartWriter]:
        writer = _S3MultipartWriter(
            self._client, self.location.bucket, self.location.key(relative), self._extra, self._pool
        )
        try:
            yield writer
        except BaseException:
            writer.abort()
            raise
        writer.close()

    def write_bytes(self, relative: str, data: bytes) -> None:
        self._client.put_object(
            Bucket=self.location.bucket, Key=self.location.key(relative), Body=data, **self._extra
        )

    def read_bytes(self, relative: str) -> bytes | None:
        try:
            return self._client.get_object(Bucket=self.location.bucket, Key=self.location.key(relative))[
                "Body"
            ].read()
        except self._client.exceptions.NoSuchKey:
            return None

    def sizes(self, relative_prefix: str) -> dict[str, int]:
        prefix = self.location.key(relative_prefix)
        found: dict[str, int] = {}
        for page in self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.location.bucket, Prefix=prefix
        ):
            for obj in page.get("Contents", []):
                found[obj["Key"][len(self.location.key("")) :]] = obj["Size"]
        return found

    def delete(self, relatives: list[str]) -> None:
        for start in range(0, len(relatives), 1000):
            chunk = relatives[start : start + 1000]
            if chunk:
                answer = self._client.delete_objects(
                    Bucket=self.location.bucket,
                    Delete={"Objects": [{"Key": self.location.key(r)} for r in chunk], "Quiet": True},
                )
                # A batch delete answers 200 with its failures inside: read them, or a purge would report
                # days gone that are not, and a restaging would keep a manifest it meant to remove.
                if failed := answer.get("Errors"):
                    first = failed[0]
                    raise ClientError(
                        {
                            "Error": {
                                "Code": first.get("Code", "DeleteFailed"),
                                "Message": f"{len(failed)} of {len(chunk)} objects were not deleted, the first "
                                f"{first.get('Key')}: {first.get('Message', '')}",
                            }
                        },
                        "DeleteObjects",
                    )


class LocalStageStorage:
    def __init__(self, location: StageLocation):
        self.location = location
        self.root = Path(location.prefix)

    @contextmanager
    def open_writer(self, relative: str):
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        try:
            with open(partial, "wb") as sink:
                yield sink
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)

    def write_bytes(self, relative: str, data: bytes) -> None:
        with self.open_writer(relative) as sink:
            sink.write(data)

    def read_bytes(self, relative: str) -> bytes | None:
        path = self.root / relative
        return path.read_bytes() if path.exists() else None

    def sizes(self, relative_prefix: str) -> dict[str, int]:
        base = self.root / relative_prefix
        folder = base if base.is_dir() else base.parent
        if not folder.exists():
            return {}
        return {
            str(p.relative_to(self.root)): p.stat().st_size
            for p in folder.rglob("*")
            if p.is_file() and str(p.relative_to(self.root)).startswith(relative_prefix)
        }

    def delete(self, relatives: list[str]) -> None:
        for relative in relatives:
            (self.root / relative).unlink(missing_ok=True)
