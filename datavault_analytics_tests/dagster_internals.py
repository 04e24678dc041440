"""The tests' only `dagster._…` imports, each with why no public name does the job (Dagster 1.13). The package's
own are in datavault_analytics/dagster_internals.py, which the tests import from where they overlap."""

# The code location as the webserver serializes it for the UI: the security test scans it for secrets, and
# no public call returns that snapshot.
# A load dated days ago, for the freshness policy: `report_runless_asset_event` stamps events with the time
# of the call, so the event is built and reported with its own timestamp.
# A freshness deadline missed, as the freshness daemon records it: its state and the event's data are not
# exported from dagster's top level, and driving the daemon to FAIL takes a deadline's wait.
from dagster._core.definitions.freshness import FreshnessState, FreshnessStateChange  # noqa: F401
from dagster._core.events import StepMaterializationData  # noqa: F401
from dagster._core.instance.utils import RUNLESS_JOB_NAME, RUNLESS_RUN_ID  # noqa: F401
from dagster._core.remote_representation.external_data import RepositorySnap  # noqa: F401

# How the UI resolves each check's state per day (Passed, Failed, Execution failed), read from the event log
# storage; the public instance methods return records, not the resolved state the UI shows.
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionResolvedStatus  # noqa: F401
