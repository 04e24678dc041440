"""The only `dagster._…` imports of the package, each with why no public name does its job (Dagster 1.13).

When Dagster exports one of these, import it from `dagster` here and nowhere else changes.
"""

# An AssetCheckEvaluation names the materialization it verified with this. `dg.AssetCheckEvaluation` takes
# it, but only `AssetCheckResult` fills it in, and only for a one-partition step: our runs check a range of
# days at once (and the drift scan checks days it did not load), so the UI's Partitions tab would show them
# "Missing" without it (pipeline/check_history.py).
from dagster._core.definitions.asset_checks.asset_check_evaluation import (  # noqa: F401
    AssetCheckEvaluationTargetMaterializationData,
)

# A run launcher answers run monitoring's health check with these; RunLauncher's interface is public
# (dg.DefaultRunLauncher), its answer types are not (run_launcher.py).
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus  # noqa: F401

# A failed run's planned checks are re-reported from each check's history per day: DagsterInstance has no
# public method that returns one check's evaluations for one partition, filtered by status.
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus  # noqa: F401
from dagster._core.storage.event_log.base import PartitionKeyFilter  # noqa: F401
