"""Metrics, logs and request ids for the API.

  context     the request being served (request id, what the database answered), a contextvar
  metrics     prometheus-client metrics, multiprocess-safe, and the /metrics exposition
  multiproc   the metrics directory `shieldx serve` prepares before workers start
  logging     JSON log lines on stderr, masking (client IP, user agent, cards, key secrets)
  middleware  the ASGI wrapper: X-Request-ID, per-request metrics, the access log line
  wiring      `install(app, ...)`: attaches all of it to the assembled application

Nothing here is imported by this package's __init__: `shieldx serve` must set
PROMETHEUS_MULTIPROC_DIR before prometheus-client is first imported.
"""
