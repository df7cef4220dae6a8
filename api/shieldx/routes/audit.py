"""Audit log verification and checkpoints, card top-ups, and erasure:
thin wrappers over audit.*, vault.* and privacy.* SQL functions.

The audit log spans every tenant, so its routes (and erasure, a platform
duty) are for the operator; card top-ups and payments follow tenant roles.
"""

from __future__ import annotations

import ipaddress

import msgspec
from litestar import Controller, Request, Response, get, post
from psycopg.types.json import Jsonb

from ..auth import READERS
from ..models_audit import (
    CardTopUp,
    CardTopUpIn,
    Checkpoint,
    CheckpointDoc,
    Erasure,
    ExportVerification,
    Payment,
    Verification,
)
from .params import DB, IdempotencyKey, created, replayed


def _ip(host: str | None) -> str | None:
    """The caller's address, when it is one (a test client or a socket path is not)."""
    try:
        return str(ipaddress.ip_address(host)) if host else None
    except ValueError:
        return None


class AuditController(Controller):
    path = "/v1/audit"
    tags = ["audit"]

    @get(
        "/verify",
        summary="Verify every chain, checkpoint, anchor and the journal's content; name the first broken entry",
    )
    async def verify(
        self, db: DB, incremental: bool = False, ledger: bool = True, journal: bool = True
    ) -> Verification:
        return Verification(
            **await db.one("SELECT * FROM audit.verify(%s, %s, %s)", (incremental, ledger, ledger and journal))
        )

    @post("/checkpoints", summary="Sign a checkpoint (Merkle root over every chain head)")
    async def checkpoint(self, db: DB) -> Response[Checkpoint]:
        return Response(Checkpoint(**await db.one("SELECT * FROM audit.checkpoint('manual')")), status_code=201)

    @get("/checkpoints/latest/export", summary="The latest checkpoint as a document to keep elsewhere")
    async def export(self, db: DB) -> dict:
        return (await db.one("SELECT audit.export_checkpoint() AS doc"))["doc"]

    @post("/checkpoints/verify", summary="Verify the log against an exported checkpoint", status_code=200)
    async def verify_export(self, data: CheckpointDoc, db: DB, request: Request) -> ExportVerification:
        doc = msgspec.json.decode(await request.body())
        pinned = request.app.state.audit_pubkey  # SHIELDX_AUDIT_PUBKEY, else the registered key
        return ExportVerification(**await db.one("SELECT * FROM audit.verify_export(%s, %s)", (Jsonb(doc), pinned)))


class PaymentsController(Controller):
    path = "/v1/tenants/{tenant_id:str}"
    tags = ["payments"]

    @post(
        "/accounts/{account_id:int}/card-top-ups",
        summary="Top up by card (card data encrypted, masked)",
        opt={"roles": ["billing", "admin"]},
        responses=replayed(CardTopUp),
    )
    async def card_top_up(
        self,
        tenant_id: str,
        account_id: int,
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
        return created(CardTopUp, row)

    @get("/payments/{entry_id:int}", summary="A card payment, masked", opt={"roles": READERS})
    async def get_payment(self, tenant_id: str, entry_id: int, db: DB) -> Payment:
        return Payment(**await db.one("SELECT * FROM vault.get_payment(%s, %s::bigint)", (tenant_id, entry_id)))


class PrivacyController(Controller):
    path = "/v1/privacy"
    tags = ["privacy"]

    @post(
        "/subjects/{subject_id:str}/erasure",
        summary="Erase a data subject (destroy their key)",
        responses=replayed(Erasure, "the subject was already erased"),
    )
    async def erase(self, subject_id: str, db: DB, idempotency_key: IdempotencyKey = None) -> Response[Erasure]:
        row = await db.one("SELECT * FROM privacy.erase_subject(%s, %s)", (subject_id, idempotency_key))
        return created(Erasure, row)


ROUTES = [AuditController, PaymentsController, PrivacyController]
