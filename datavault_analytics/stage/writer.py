"""Writes one day's Arrow batches as Parquet files of even size, into the stage's storage."""

from contextlib import ExitStack

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from datavault_analytics.stage.manifest import StagedFile
from datavault_analytics.stage.storage import StageStorage


class ParquetDayWriter:
    """Writes one day's record batches as Parquet (zstd; the random payload uncompressed): row groups of
    bounded rows and bytes, and a new file whenever the current one reaches its size.

    File sizes: with `expected_rows` (PostgreSQL's estimate), the first row group shows the bytes per row,
    and the estimated rest of the day is shared evenly among the round(rest / target) files it needs; the
    last may grow to 1.6 targets to take what the estimate missed, so a day does not end in a tiny file.
    At the 150 MB default, files are 105-250 MB, the range Snowflake recommends, as long as the estimate
    is within about half a file of the truth. Without an estimate, or with one the first row group
    already exceeds, a file closes at the target.
    """

    def __init__(
        self,
        storage: StageStorage,
        directory: str,
        schema: pa.Schema,
        target_file_bytes: int,
        row_group_rows: int,
        row_group_bytes: int,
        expected_rows: int | None = None,
        file_suffix: str = "",
    ):
        self.storage, self.directory, self.schema = storage, directory, schema
        self.file_suffix = file_suffix
        self.target_file_bytes, self.expected_rows = target_file_bytes, expected_rows
        self._expected_bytes: float | None = (
            None  # the day's estimated bytes, once the first row group is written
        )
        self._group_bytes = 0  # the last row group's size in its file
        self.row_group_rows, self.row_group_bytes = row_group_rows, row_group_bytes
        self.files: list[StagedFile] = []
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = self._pending_bytes = 0
        self._file = ExitStack()  # the open file's sink: closed on rotation, aborted on error
        self._sink = self._writer = None
        self._file_rows = 0
        # Ciphertext is random: dictionary encoding, min/max statistics and compression on it only cost time
        # (zstd saves under 1% of it, for 0.13 CPU s per 1M rows). The other columns compress about 2:1.
        binary = {f.name for f in schema if pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type)}
        self._statistics_columns = [f.name for f in schema if f.name not in binary]
        self._compression = {f.name: "none" if f.name in binary else "zstd" for f in schema}
        self._compression_levels = {name: 1 for name in self._statistics_columns}

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        self._pending_bytes += batch.nbytes
        if self._pending_rows >= self.row_group_rows or self._pending_bytes >= self.row_group_bytes:
            self._flush_row_group()

    def _dictionary_columns(self, sample: pa.Table) -> list[str]:
        """Columns worth dictionary-encoding: at most one distinct value in two rows of the sample.

        Ids, keys and timestamps are nearly unique; trying a dictionary on them costs time before
        Parquet gives up on it. Binary payloads never get one.
        """
        return [
            name
            for name in self._statistics_columns
            if pc.count_distinct(sample.column(name), mode="all").as_py() * 2 <= sample.num_rows
        ]

    def _open_file(self, sample: pa.Table) -> None:
        name = f"{self.directory}/part-{len(self.files):05d}{self.file_suffix}.parquet"
        self._sink = self._file.enter_context(self.storage.open_writer(name))
        self._writer = pq.ParquetWriter(
            self._sink,
            self.schema,
            compression=self._compression,
            compression_level=self._compression_levels,
            use_dictionary=self._dictionary_columns(sample),
            write_statistics=self._statistics_columns,
        )
        self._name, self._file_rows = name, 0

    def _flush_row_group(self) -> None:
        if not self._pending:
            return
        table = pa.Table.from_batches(self._pending, schema=self.schema)
        self._pending, self._pending_rows, self._pending_bytes = [], 0, 0
        # One row group per slice, bounded by rows and by bytes; a file can only rotate between row groups.
        bytes_per_row = max(1, table.nbytes // max(1, table.num_rows))
        group_rows = max(1, min(self.row_group_rows, self.row_group_bytes // bytes_per_row))
        for offset in range(0, table.num_rows, group_rows):
            group = table.slice(offset, group_rows)
            if self._writer is None:
                self._open_file(group)
            written = self._sink.tell()
            self._writer.write_table(group, row_group_size=group.num_rows)
            self._file_rows += group.num_rows
            self._group_bytes = self._sink.tell() - written
            if self._expected_bytes is None and self.expected_rows:
                if self._file_rows > self.expected_rows:  # the estimate is already wrong (no statistics yet)
                    self.expected_rows = None
                else:
                    self._expected_bytes = self.expected_rows * self._sink.tell() / self._file_rows
            if self._sink.tell() >= self._file_limit():
                self._close_file()

    def _file_limit(self) -> float:
        """The current file's size: the estimated rest of the day, shared evenly among the files it needs."""
        if self._expected_bytes is None:
            return self.target_file_bytes
        remaining = self._expected_bytes - sum(f.bytes for f in self.files)
        files_left = max(1, round(remaining / self.target_file_bytes))
        if files_left == 1:  # the last file takes whatever the estimate missed, up to 1.6 targets (250 MB)
            return 1.6 * self.target_file_bytes
        size = min(max(remaining / files_left, self.target_file_bytes / 1.5), 1.5 * self.target_file_bytes)
        return (
            size - self._group_bytes / 2
        )  # closing within half a row group of the size ends on it on average

    def _close_file(self) -> None:
        self._writer.close()
        size = self._sink.tell()
        self._file.close()
        self.files.append(
            StagedFile(
                name=self._name,
                uri=self.storage.location.uri_of(self._name),
                rows=self._file_rows,
                bytes=size,
            )
        )
        self._writer = self._sink = None

    def close(self) -> list[StagedFile]:
        self._flush_row_group()
        if self._writer is not None:
            self._close_file()
        return self.files

    def abort(self, error: BaseException) -> None:
        """Discard the file being written: nothing appears at its name."""
        self._file.__exit__(type(error), error, error.__traceback__)
        self._writer = self._sink = None
