"""Audit log verification and signed checkpoints: thin wrappers over the audit.* SQL functions.

The audit log spans every tenant, so its routes declare no roles: the
platform operator only.
"""

from __future__ import annotations

import msgspec
from litestar import Controller, Request, Response, get, post
from psycopg.types.json import Jsonb

from ..models.audit import Checkpoint, CheckpointDoc, ExportVerification, Verification
from .params import DB


class AuditController(Controller):
    path = "/v1/audit"
    tags = ["audit"]

    @get("/verify", summary="Verify every hash chain, checkpoint and anchor; name the first broken entry")
    async def verify(self, db: DB, incremental: bool = False, ledger: bool = True) -> Verification:
        return Verification(**await db.one("SELECT * FROM audit.verify(%s, %s)", (incremental, ledger)))

    @post("/checkpoints", summary="Sign a checkpoint (Merkle root over every chain head)")
    async def checkpoint(self, db: DB) -> Response[Checkpoint]:
        return Response(Checkpoint(**await db.one("SELECT * FROM audit.checkpoint('manual')")), status_code=201)

    @get("/checkpoints/latest/export", summary="The latest checkpoint as a document to keep elsewhere")
    async def export_checkpoint(self, db: DB) -> dict:
        return (await db.one("SELECT audit.export_checkpoint() AS doc"))["doc"]

    @post("/checkpoints/verify", summary="Verify the log against an exported checkpoint", status_code=200)
    async def verify_export(self, data: CheckpointDoc, db: DB, request: Request) -> ExportVerification:
        doc = msgspec.json.decode(await request.body())
        return ExportVerification(**await db.one("SELECT * FROM audit.verify_export(%s)", (Jsonb(doc),)))


ROUTES = [AuditController]
