"""``/healthz``: liveness as JSON (how many workers answer), no Prometheus needed."""

from __future__ import annotations

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from services.service import Service


async def healthz_endpoint(request: Request) -> Response:
    """200 with ``status`` ``ok`` (all workers answer) or ``degraded`` (some do); 503 if none."""
    service: Service = request.app.state.service
    health = await anyio.to_thread.run_sync(service.worker_health)
    alive = sum(h.alive for h in health)
    status = "ok" if alive == len(health) else "degraded" if alive else "down"
    body = {
        "status": status,
        "workers_alive": alive,
        "workers_total": len(health),
        "queries_running": service.limiter.running(),
        "up_since": service.started_at.isoformat(timespec="seconds"),
        "workers": [
            {
                "location": h.location,
                "alive": h.alive,
                "pid": h.pid,
                "running_tasks": h.running_tasks,
                "error": h.error,
            }
            for h in health
        ],
    }
    return JSONResponse(body, status_code=200 if alive else 503)
