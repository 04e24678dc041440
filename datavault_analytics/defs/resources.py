"""The connections every table shares, made once from the environment when the definitions are built."""

import dagster as dg

from datavault_analytics.resources import build_resources
from datavault_analytics.settings import Settings


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources=build_resources(Settings.from_environment()))
