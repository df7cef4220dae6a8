"""/metrics: every worker's metrics in Prometheus' text format (see shieldx/observability/metrics.py)."""

from __future__ import annotations

from litestar import Response, get

from ..observability.metrics import render as render_metrics


@get(
    "/metrics",
    tags=["health"],
    summary="Prometheus metrics: requests, latency, pool, breaker, authentication, refusals (all workers)",
    media_type="text/plain; version=0.0.4",
    opt={"public": True},
)
async def metrics() -> Response[bytes]:
    body, content_type = await render_metrics()  # shieldx/observability/metrics.py
    return Response(body, media_type=content_type)


ROUTES = [metrics]
