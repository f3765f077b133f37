"""HATS partitioning: layout, margins, director index and transactional ingest."""

import os

# healpy's OpenMP loops busy-wait for cores that DuckDB's threads are using;
# on a small shared machine that made margin computation ten times slower.
# One thread per healpy call is faster here; operators can still override it.
os.environ.setdefault("OMP_NUM_THREADS", "1")
