"""/metrics: the circuit breaker, authentication and rate-limit counters, in Prometheus' text format.

The counters live where they are counted (shieldx.breaker.Breaker, shieldx.auth.KeyAuth);
this route only renders them.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, get


def _prometheus(prefix: str, values: dict[str, Any], labels: str = "") -> list[str]:
    lines = []
    for name, value in values.items():
        if isinstance(value, dict):
            for label, v in value.items():
                lines.append(f'{prefix}_{name}{{reason="{label}"}} {v}')
        elif isinstance(value, (int, float)):
            lines.append(f"{prefix}_{name}{labels} {float(value)}")
    return lines


@get(
    "/metrics",
    tags=["health"],
    summary="Circuit breaker, authentication and rate-limit counters (Prometheus)",
    media_type="text/plain; version=0.0.4",
    opt={"public": True},
)
async def metrics(request: Request) -> str:
    breaker = request.app.state.database.breaker.snapshot()
    lines = [
        f'shieldx_breaker_state{{state="{s}"}} {1.0 if breaker["state"] == s else 0.0}'
        for s in ("closed", "open", "half_open")
    ]
    lines += _prometheus("shieldx_breaker", {k: v for k, v in breaker.items() if k != "state"})
    lines += _prometheus("shieldx_auth", request.app.state.auth.snapshot())
    return "\n".join(lines) + "\n"


ROUTES = [metrics]
