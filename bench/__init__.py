"""`make bench`: the stage step, dlt and psql's binary COPY side by side, and a backfill through Dagster.

See bench/run.py for what is measured and how; bench/results.md holds the last committed results.
"""
