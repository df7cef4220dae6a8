"""Card top-ups and card payments: thin wrappers over the vault.* SQL functions.

Card data is encrypted in the database and answered masked; the routes follow
tenant roles.
"""

from __future__ import annotations

import ipaddress

from litestar import Controller, Request, Response, get, post
from litestar.openapi.datastructures import ResponseSpec

from ..auth import READERS
from ..errors import PROBLEM
from ..models.bounds import PathId, TenantPath
from ..models.vault import CardTopUp, CardTopUpIn, Payment
from .params import DB, LOCATION, REPLAY, IdempotencyKey, created


def _ip(host: str | None) -> str | None:
    """The caller's address, when it is one (a test client or a socket path is not)."""
    try:
        return str(ipaddress.ip_address(host)) if host else None
    except ValueError:
        return None


class PaymentsController(Controller):
    path = "/v1/tenants/{tenant_id:str}"
    tags = ["payments"]

    @post(
        "/accounts/{account_id:int}/card-top-ups",
        summary="Top up by card (card data encrypted, masked)",
        opt={"roles": ["billing", "admin"]},
        status_code=201,
        response_headers=[*LOCATION, *REPLAY],
        responses={
            410: ResponseSpec(
                None, description="subject_erased (SX205): the data subject was erased", media_type=PROBLEM
            )
        },
    )
    async def top_up(
        self,
        tenant_id: TenantPath,
        account_id: PathId,
        data: CardTopUpIn,
        db: DB,
        request: Request,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[CardTopUp]:
        ip = _ip(request.client.host if request.client else None)
        row = await db.one(
            "SELECT * FROM vault.top_up(%s, %s::bigint, %s::bigint, %s, %s, %s, %s, %s, %s, %s)",
            (
                tenant_id,
                account_id,
                data.amount,
                idempotency_key,
                data.card_number,
                data.expiry,
                data.holder,
                data.subject,
                ip if data.subject else None,
                request.headers.get("user-agent") if data.subject else None,
            ),
        )
        return created(CardTopUp, row, f"/v1/tenants/{tenant_id}/payments/{row['entry_id']}")

    @get("/payments/{entry_id:int}", summary="A card payment, masked", opt={"roles": READERS})
    async def get_payment(self, tenant_id: TenantPath, entry_id: PathId, db: DB) -> Payment:
        return Payment(**await db.one("SELECT * FROM vault.get_payment(%s, %s::bigint)", (tenant_id, entry_id)))


ROUTES = [PaymentsController]
