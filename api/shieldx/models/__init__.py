"""Request and response bodies (msgspec structs), one module per domain.

The domains are those of the SQL schemas and of `shieldx.routes`: credits,
holds (holds, distributed and external transactions), auth (keys), audit,
vault (card payments), privacy, shadow and health. A struct is named with the
SQL function's word for its concept (docs/naming.md).
"""
