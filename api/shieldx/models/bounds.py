"""The bounds SQL enforces, stated for the OpenAPI document.

SQL is the rule (one rule, one place): every bound here is checked by the SQL
function or constraint named next to it, which refuses a value outside it
with its named error (SXnnn). The API only states them, so that the document
tells clients what is accepted: `documented(...)` puts JSON Schema keywords in
msgspec's `extra_json_schema`, which msgspec never checks, so a refusal always
comes from SQL, with its name and facts. api/tests/test_bounds.py sends each
documented bound, and the value just beyond it, to SQL: the two cannot drift
apart silently.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar.params import Parameter

MAX_AMOUNT = 10**15  # credits._movement_problem, holds.amount, dist legs
BIGINT_MAX = 2**63 - 1  # ids are bigint (bigserial: the first is 1)
INT_MAX = 2**31 - 1
MAX_TTL_S = 30 * 86400  # credits._ttl_problem: more than 0, at most 30 days
MIN_TTL_S = 1e-6  # an interval counts microseconds: less is 0, which is refused
TENANT_ID = r"^[a-z0-9][a-z0-9_-]{0,62}$"  # credits.tenants CHECK, credits.create_tenant
RULE_ID = r"^[a-z0-9][a-z0-9_.-]{0,62}$"  # shadow.rules CHECK, shadow.create_rule
KEY_ID = r"^[0-9a-f]{12}$"  # auth.keys CHECK
TENANT_ROLES = ["consumer", "billing", "admin", "auditor"]  # auth._check_key_args


def documented(**schema: Any) -> msgspec.Meta:
    """JSON Schema keywords (OpenAPI names: minLength, maximum, ...) for the document only."""
    return msgspec.Meta(extra_json_schema={"extra": schema})


def param(**schema: Any) -> dict[str, Any]:
    """The same keywords for a path, query or header parameter (litestar's schema_extra)."""
    return {"schema_extra": schema}


# --- body fields --------------------------------------------------------------
Amount = Annotated[int, documented(minimum=1, maximum=MAX_AMOUNT)]  # SX003
# A leg debits (< 0) or credits (> 0), never 0 (credits._check_legs: SX112).
LegAmount = Annotated[int, documented(minimum=-MAX_AMOUNT, maximum=MAX_AMOUNT, **{"not": {"const": 0}})]
Reason = Annotated[str, documented(maxLength=500)]  # SX007; optional where used
Name = Annotated[str, documented(minLength=1, maxLength=200)]  # SX007
Id = Annotated[int, documented(minimum=1, maximum=BIGINT_MAX)]
Version = Annotated[int, documented(minimum=1, maximum=INT_MAX)]  # shadow.rule_versions.version
TtlSeconds = Annotated[float, documented(minimum=MIN_TTL_S, maximum=MAX_TTL_S)]  # SX106
Xid = Annotated[str, documented(minLength=1, maxLength=200)]  # SX007
TenantId = Annotated[str, documented(pattern=TENANT_ID)]

# --- parameters ---------------------------------------------------------------
# A path id: bigint, and never below 1 (an id outside answers 404 or 422).
PathId = Annotated[int, Parameter(**param(minimum=1, maximum=BIGINT_MAX))]
TenantPath = Annotated[str, Parameter(**param(pattern=TENANT_ID))]
XidPath = Annotated[str, Parameter(**param(minLength=1, maxLength=200))]  # SX007
RulePath = Annotated[str, Parameter(**param(pattern=RULE_ID))]
KeyPath = Annotated[str, Parameter(**param(pattern=KEY_ID))]
Text200Path = Annotated[str, Parameter(**param(minLength=1, maxLength=200))]  # subject and unit ids (SX007)
