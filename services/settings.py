"""The service's limits, read from the named settings (``qcat/config.py``)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from qcat.config import SETTINGS


@dataclass(frozen=True)
class ServiceSettings:
    """What the HTTP service allows; every field is the named setting of the same name."""

    tap_maxrec_default: int
    tap_maxrec_hard: int
    tap_sync_timeout_s: float
    tap_retention_s: int
    tap_client_queries: int
    tap_max_queries: int
    tap_max_query_chars: int
    tap_async_running: int
    tap_execution_duration_s: int
    tap_execution_duration_max_s: int
    tap_wait_max_s: float
    tap_upload_max_bytes: int
    tap_upload_max_rows: int
    public_url: str
    serve_czar_memory_limit: str
    datalink_max_ids: int
    large_answer_turns: int
    large_answer_patience_s: float
    sia_maxrec_default: int
    sia_maxrec_hard: int

    @classmethod
    def defaults(cls, **overrides: Any) -> ServiceSettings:
        """The settings' defaults, with ``overrides`` (field name -> value) applied."""
        values: dict[str, Any] = {f.name: SETTINGS[f.name].default for f in fields(cls)}
        unknown = set(overrides) - set(values)
        if unknown:
            raise TypeError(f"unknown service settings: {', '.join(sorted(unknown))}")
        values.update(overrides)
        return cls(**values)
