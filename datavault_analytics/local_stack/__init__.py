"""The embedded local stack: real PostgreSQL, moto's S3 and fakesnow's Snowflake on 127.0.0.1.

It lets `make demo`, `make dev` and the tests run the whole pipeline on one machine with no cloud
account. Modules:
- postgres_server, s3_server, snowflake_server: one server each, runnable in the foreground, in a
  thread (tests) or detached by the stack;
- stack: `datavault-analytics stack up|down|status|env`, and `local_environment()`;
- seed: realistic encrypted `records` rows.

Only light modules are imported here: `local_environment()` runs when the Dagster definitions load.
"""

from datavault_analytics.local_stack.errors import LocalStackError, PortInUseError
from datavault_analytics.local_stack.stack import local_environment

__all__ = ["LocalStackError", "PortInUseError", "local_environment"]
