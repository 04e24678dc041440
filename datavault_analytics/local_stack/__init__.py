"""The embedded local stack: real PostgreSQL, moto's S3 and fakesnow's Snowflake on 127.0.0.1.

Installed with the `[local]` extra; only light modules are imported here. docs/local-stack.md describes
each part.
"""

from datavault_analytics.local_stack.errors import LocalStackError, PortInUseError
from datavault_analytics.local_stack.stack import local_environment

__all__ = ["LocalStackError", "PortInUseError", "local_environment"]
