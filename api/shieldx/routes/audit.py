"""Audit log verification and signed checkpoints: thin wrappers over the audit.* SQL functions.

The audit log spans every tenant, so its routes declare no roles: the
platform operator only.
"""

from __future__ import annotations

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.openapi.datastructures import ResponseSpec
from psycopg.types.json import Jsonb

from ..errors import PROBLEM
from ..models.audit import Checkpoint, CheckpointDoc, ExportVerification, Verification
from .params import DB


class AuditController(Controller):
    path = "/v1/audit"
    tags = ["audit"]

    @get(
        "/verify",
        summary="Verify every chain, checkpoint, anchor and the journal's content; name the first broken entry",
    )
    async def verify(
        self, db: DB, request: Request, incremental: bool = False, ledger: bool = True, journal: bool = True
    ) -> Verification:
        # It reads the whole log: its own timeout (SHIELDX_AUDIT_VERIFY_TIMEOUT), not the pool's.
        return Verification(
            **await db.one_with_timeout(
                "SELECT * FROM audit.verify(%s, %s, %s)",
                (incremental, ledger, ledger and journal),
                request.app.state.audit_verify_timeout_ms,
            )
        )

    @post("/checkpoints", summary="Sign a checkpoint (Merkle root over every chain head)")
    async def checkpoint(self, db: DB) -> Response[Checkpoint]:
        return Response(Checkpoint(**await db.one("SELECT * FROM audit.checkpoint('manual')")), status_code=201)

    @get("/checkpoints/latest/export", summary="The latest checkpoint as a document to keep elsewhere")
    async def export_checkpoint(self, db: DB) -> dict:
        return (await db.one("SELECT audit.export_checkpoint() AS doc"))["doc"]

    @post(
        "/checkpoints/verify",
        summary="Verify the log against an exported checkpoint",
        status_code=200,
        responses={
            410: ResponseSpec(
                None, description="checkpoint_pruned (SX207): the checkpoint's entries were pruned", media_type=PROBLEM
            )
        },
    )
    async def verify_export(self, data: CheckpointDoc, db: DB, request: Request) -> ExportVerification:
        doc = msgspec.json.decode(await request.body())
        pinned = request.app.state.audit_pubkey  # SHIELDX_AUDIT_PUBKEY, else the registered key
        return ExportVerification(
            **await db.one_with_timeout(
                "SELECT * FROM audit.verify_export(%s, %s)",
                (Jsonb(doc), pinned),
                request.app.state.audit_verify_timeout_ms,
            )
        )


ROUTES = [AuditController]
