"""Setup SQL for test workers (``qcat worker --setup-module tests.worker_setup``)."""

SETUP_SQL = ["CREATE MACRO twice(x) AS x * 2"]
