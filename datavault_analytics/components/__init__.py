"""Dagster components of this project (registered in pyproject's [tool.dg.project] registry_modules)."""

from datavault_analytics.components.datavault_table import DataVaultTable

__all__ = ["DataVaultTable"]
