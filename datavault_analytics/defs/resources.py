"""The connections every table shares, made once from the environment (environment.py)."""

import dagster as dg

from datavault_analytics.environment import SETTINGS, build_resources


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources=build_resources(SETTINGS))
