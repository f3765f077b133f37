"""The service's limits, read from the named settings (``qcat/config.py``)."""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from qcat.config import SETTINGS
from qcat.errors import ConfigError


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
    def assigned(cls, assignments: Sequence[str]) -> ServiceSettings:
        """The defaults with ``NAME=VALUE`` assignments applied (``qcat serve --set``).

        A value takes the type of the setting's field; numbers must be positive.
        Raises :class:`ConfigError` naming the assignment at fault.
        """
        kinds = {f.name: str(f.type) for f in fields(cls)}  # "int", "float" or "str"
        names = list(kinds)
        overrides: dict[str, Any] = {}
        for assignment in assignments:
            name, sep, text = assignment.partition("=")
            name = name.strip()
            if not sep or not name:
                raise ConfigError(f"--set {assignment!r}: write NAME=VALUE")
            if name not in names:
                close = difflib.get_close_matches(name, names, n=1)
                hint = f"; did you mean {close[0]}?" if close else ""
                raise ConfigError(
                    f"--set {assignment}: {name!r} is not a service setting{hint} "
                    "(they are listed in docs/service.md)"
                )
            overrides[name] = _value(assignment, kinds[name], text.strip())
        return cls.defaults(**overrides)

    @classmethod
    def defaults(cls, **overrides: Any) -> ServiceSettings:
        """The settings' defaults, with ``overrides`` (field name -> value) applied."""
        values: dict[str, Any] = {f.name: SETTINGS[f.name].default for f in fields(cls)}
        unknown = set(overrides) - set(values)
        if unknown:
            raise TypeError(f"unknown service settings: {', '.join(sorted(unknown))}")
        values.update(overrides)
        return cls(**values)


def _value(assignment: str, kind: str, text: str) -> int | float | str:
    """``text`` as a value of type ``kind`` (``"int"``, ``"float"`` or ``"str"``)."""
    if kind == "str":
        return text
    try:
        value: int | float = int(text) if kind == "int" else float(text)
    except ValueError:
        noun = "a whole number" if kind == "int" else "a number"
        raise ConfigError(f"--set {assignment}: the value must be {noun}") from None
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"--set {assignment}: the value must be positive and finite")
    return value
