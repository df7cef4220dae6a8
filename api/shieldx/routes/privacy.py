"""Erasure of a data subject: a thin wrapper over privacy.erase_subject.

Erasure is a platform duty: the route declares no roles (the operator only).
"""

from __future__ import annotations

from litestar import Controller, Response, post

from ..models.bounds import Text200Path
from ..models.privacy import Erasure
from .params import DB, REPLAY, IdempotencyKey, created


class PrivacyController(Controller):
    path = "/v1/privacy"
    tags = ["privacy"]

    @post(
        "/subjects/{subject_id:str}/erasure",
        summary="Erase a data subject (destroy their key)",
        status_code=201,
        response_headers=REPLAY,
    )
    async def erase_subject(
        self, subject_id: Text200Path, db: DB, idempotency_key: IdempotencyKey = None
    ) -> Response[Erasure]:
        row = await db.one("SELECT * FROM privacy.erase_subject(%s, %s)", (subject_id, idempotency_key))
        return created(Erasure, row)


ROUTES = [PrivacyController]
