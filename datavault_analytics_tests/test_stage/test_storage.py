"""The stage's S3 storage against the S3 emulator: a batch delete's per-object failures are errors."""

import pytest

from datavault_analytics.errors import StageError, StageUnavailableError


def test_a_batch_delete_that_leaves_objects_behind_fails_naming_them(pipeline):
    with pipeline.configured("s3_stage") as built:
        stage = built.s3_stage
        storage = stage.storage()
        names = [f"{stage.table_folder}/dt=2026-11-01/part-0000{n}.parquet" for n in range(3)]
        for name in names:
            storage.write_bytes(name, b"x")

        # S3 answers DeleteObjects 200 with failures listed inside (an object lock, a denied key): injected
        # into the emulator's real answer, as a bucket policy or a WORM retention would make S3 answer.
        def refuse(parsed, **_):
            parsed["Errors"] = [{"Key": names[1], "Code": "AccessDenied", "Message": "Access Denied"}]

        storage._client.meta.events.register("after-call.s3.DeleteObjects", refuse)
        with pytest.raises(StageError) as refused, stage.s3_errors("deleting staged files"):
            storage.delete(names)
        assert "S3 refused deleting staged files" in str(refused.value) and "AccessDenied" in str(
            refused.value
        )
        assert f"1 of 3 objects were not deleted, the first {names[1]}" in str(refused.value)

        def slow_down(parsed, **_):
            parsed["Errors"] = [{"Key": names[2], "Code": "SlowDown", "Message": "Reduce your request rate"}]

        storage._client.meta.events.unregister("after-call.s3.DeleteObjects", refuse)
        storage._client.meta.events.register("after-call.s3.DeleteObjects", slow_down)
        with pytest.raises(StageUnavailableError), stage.s3_errors("deleting staged files"):
            storage.delete(names)

        storage._client.meta.events.unregister("after-call.s3.DeleteObjects", slow_down)
        storage.write_bytes(names[0], b"x")
        storage.delete(names)  # nothing refused: no error, and nothing left
        assert storage.sizes(f"{stage.table_folder}/dt=2026-11-01/") == {}
