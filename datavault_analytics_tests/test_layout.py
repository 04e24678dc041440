"""The rules the package's layout keeps, checked on its source: a new module cannot quietly break them."""

import ast
import importlib
import importlib.util
import inspect
import re
from pathlib import Path

import pytest

import datavault_analytics
from datavault_analytics import errors
from datavault_analytics.errors import PermanentError, TransientError, UnboundTableError
from datavault_analytics.postgres.locks import PartitionLocks
from datavault_analytics.postgres.resource import PostgresResource
from datavault_analytics.settings import Settings
from datavault_analytics.snowflake.loader import SnowflakeLoader
from datavault_analytics.stage.resource import S3Stage
from datavault_analytics.table.day_window import DayWindow
from datavault_analytics_tests.records import RECORDS

PACKAGE = Path(datavault_analytics.__file__).parent
REPO = PACKAGE.parent
MODULES = sorted(p for p in PACKAGE.rglob("*.py") if "local_stack" not in p.parts)


def _dagster_internals_importers(paths: list[Path], root: Path) -> list[str]:
    importers = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if any(name.startswith("dagster._") for name in names):
                importers.append(path.relative_to(root).as_posix())
    return sorted(set(importers))


def test_no_module_imports_dagster_internals_but_the_one_that_says_why():
    assert _dagster_internals_importers(MODULES, PACKAGE) == ["dagster_internals.py"]
    tests = Path(__file__).parent
    assert _dagster_internals_importers(sorted(tests.rglob("*.py")), tests) == ["dagster_internals.py"]


def test_modules_stay_small_enough_to_read():
    lines = {p.relative_to(PACKAGE).as_posix(): len(p.read_text().splitlines()) for p in MODULES}
    assert {name: n for name, n in lines.items() if n > 400} == {}


def test_every_error_class_is_permanent_or_transient_and_never_both():
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, Exception)]
    ours = [
        c for c in classes if c.__module__ == errors.__name__ and c not in (PermanentError, TransientError)
    ]
    assert len(ours) >= 14
    for cls in ours:
        kinds = [issubclass(cls, PermanentError), issubclass(cls, TransientError)]
        assert kinds.count(True) == 1, f"{cls.__name__} is {'both' if all(kinds) else 'neither'}"


def test_errors_are_defined_in_errors_py_alone_and_each_is_documented():
    documented = (REPO / "docs" / "errors.md").read_text()
    for path in MODULES:
        if path.name == "errors.py" or path.parent.name == "cli":  # a command's own errors print one line
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases = {getattr(b, "id", getattr(b, "attr", "")) for b in node.bases}
                assert not bases & {
                    "PermanentError",
                    "TransientError",
                    "Exception",
                    "ValueError",
                    "RuntimeError",
                }, f"{path.relative_to(PACKAGE)} defines error {node.name}: errors live in errors.py"
    for name in re.findall(r"^class (\w+)\(", (PACKAGE / "errors.py").read_text(), flags=re.M):
        assert f"`{name}`" in documented, f"docs/errors.md does not describe {name}"


def test_settings_are_read_when_definitions_are_built_not_at_import():
    for path in MODULES:
        source = path.read_text()
        assert not re.search(r"^\w+ = Settings\.from_environment\(", source, flags=re.M), path
        assert "SETTINGS" not in source, path


def test_every_setting_a_resource_has_takes_the_resources_default():
    """One default per knob: a setting read for a resource field is that field, default and bounds alike."""
    for setting, (resource, field) in {
        "pg_max_burst_ms": (PostgresResource, "max_burst_ms"),
        "pg_statement_timeout_seconds": (PostgresResource, "statement_timeout_seconds"),
        "lock_wait_seconds": (PartitionLocks, "wait_seconds"),
        "snowflake_lock_timeout_seconds": (SnowflakeLoader, "lock_timeout_seconds"),
        "snowflake_time_travel_days": (SnowflakeLoader, "time_travel_days"),
    }.items():
        ours, theirs = Settings.model_fields[setting], resource.model_fields[field]
        assert (ours.default, ours.metadata, ours.description) == (
            theirs.default,
            theirs.metadata,
            theirs.description,
        )
        assert ours.validation_alias.startswith(("DATAVAULT_", "SNOWFLAKE_"))


@pytest.mark.parametrize(
    "use",
    [
        lambda: PostgresResource(dsn="postgresql://nobody@127.0.0.1:9/none").source_columns(),
        lambda: PostgresResource(dsn="postgresql://nobody@127.0.0.1:9/none").day_stats(
            [DayWindow.for_key("2026-01-01")]
        ),
        lambda: PartitionLocks(dsn="postgresql://nobody@127.0.0.1:9/none").try_hold(
            "2026-01-01", holder="test"
        ),
        lambda: S3Stage.model_construct(stage_uri="s3://b/p", dataset=None).read_manifest(None, "2026-01-01"),
        lambda: SnowflakeLoader.model_construct(table_spec=None).table_name,
    ],
    ids=["postgres catalog", "postgres aggregates", "partition locks", "stage", "snowflake"],
)
def test_a_shared_resource_not_bound_to_a_table_refuses_to_touch_one(use):
    with pytest.raises(UnboundTableError, match="for_table"):
        use()


def test_a_bound_resource_names_its_table():
    bound = PostgresResource(dsn="postgresql://nobody@127.0.0.1:9/none").for_table(RECORDS.spec)
    assert bound.qualified_table == '"public"."records"'
    assert (
        S3Stage.model_construct(stage_uri="s3://b/p", dataset=None).for_table(RECORDS.spec).table_folder
        == "records"
    )


def test_bench_and_soak_import_only_names_the_package_has():
    """`make bench` and `make soak` run outside the suite: every name they import from the package exists."""
    missing = []
    for path in sorted([*(REPO / "bench").rglob("*.py"), *(REPO / "soak").rglob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("datavault_analytics"):
                module = importlib.import_module(node.module)
                missing += [
                    f"{path.relative_to(REPO)}: {node.module}.{a.name}"
                    for a in node.names
                    if not hasattr(module, a.name) and not importlib.util.find_spec(f"{node.module}.{a.name}")
                ]
    assert len(list((REPO / "bench").rglob("*.py"))) > 5 and missing == []
