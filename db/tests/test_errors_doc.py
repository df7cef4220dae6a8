"""docs/errors.md is generated from the error catalog (ops.error_codes()) and must be current.

After changing a db/functions/*/errors.sql, rewrite it with:
    UPDATE_DOCS=1 .venv/bin/pytest db/tests/test_errors_doc.py
"""

from __future__ import annotations

import os
from pathlib import Path

from helpers import rows

ERRORS_MD = Path(__file__).resolve().parents[2] / "docs" / "errors.md"

# SQLSTATE prefix -> the domain that raises it and the page that explains it.
DOMAINS = {
    "SX0": ("Ledger", "ledger.md"),
    "SX1": ("Holds and distributed transactions", "holds.md"),
    "SX2": ("Audit log, card payments and personal data", "audit.md"),
    "SX3": ("Access control", "access-control.md"),
    "SX4": ("Shadow evaluation", "shadow.md"),
}

INTRO = """\
# Errors

<!-- GENERATED from ops.error_catalog by db/tests/test_errors_doc.py; do not edit by hand.
     After changing a db/functions/*/errors.sql: UPDATE_DOCS=1 pytest db/tests/test_errors_doc.py -->

Every refusal is a named error. In SQL it is raised with its own SQLSTATE (`SXnnn`), a
human message, a JSON `DETAIL` with the facts, and the title as `HINT`. Over HTTP the API
answers the status listed here, as RFC 9457 `application/problem+json`:

```json
{"type": "/docs/errors#insufficient_funds", "title": "Insufficient available credits", "status": 409,
 "detail": "account 1 has 775 credits available, 1000000 requested", "sqlstate": "SX004",
 "facts": {"account_id": 1, "available": 775, "requested": 1000000}, "instance": "/v1/tenants/acme/accounts/1/consume"}
```

The `type` is `/docs/errors#<name>`: the API serves this list itself at `/docs/errors`
(rendered from the same catalog, one anchor per name, with the API's own answers such as
`invalid_request` and `database_unavailable`), so the reference resolves against the API's
address; `SHIELDX_ERRORS_URL` points it elsewhere. `instance` is the request's path.

A 4xx answer means nothing changed. The list is the catalog itself (`SELECT * FROM
ops.error_codes()`), one section per error; each has the anchor `#<name>` (for example
[`#insufficient_funds`](#insufficient_funds)). PostgreSQL's own failures (lost connection,
standby, shutdown, timeouts, serialization failures) are answered as 503 with `Retry-After`
(retry with the same idempotency key); see [the HTTP API](http-api.md#errors).
"""


def render(catalog: list[dict]) -> str:
    """The page for these catalog rows (sqlstate, name, http_status, title[, description])."""
    out = [INTRO]
    by_domain: dict[str, list[dict]] = {}
    for r in catalog:
        prefix = r["sqlstate"][:3]
        assert prefix in DOMAINS, f"{r['sqlstate']}: add its domain to DOMAINS in {Path(__file__).name}"
        by_domain.setdefault(prefix, []).append(r)
    out.append("\n| SQLSTATE | name | HTTP | title |\n|---|---|---|---|\n")
    out.extend(
        f"| {r['sqlstate']} | [`{r['name']}`](#{r['name']}) | {r['http_status']} | {r['title']} |\n" for r in catalog
    )
    for prefix, (title, page) in DOMAINS.items():
        if prefix not in by_domain:
            continue
        out.append(f"\n## {title} ({prefix}xx)\n\nExplained in [{page}]({page}).\n")
        for r in by_domain[prefix]:
            out.append(
                f'\n<a id="{r["name"]}"></a>\n\n### {r["sqlstate"]} {r["name"]}\n\n'
                f"**{r['title']}**. HTTP {r['http_status']}; SQLSTATE `{r['sqlstate']}`; "
                f"problem type `/docs/errors#{r['name']}`.\n"
            )
            if r.get("description"):
                out.append(f"\n{r['description']}\n")
    return "".join(out)


def test_errors_doc_is_generated_from_the_catalog(db):
    catalog = rows(db, "ops.error_codes")
    assert catalog
    text = render(catalog)
    if os.environ.get("UPDATE_DOCS"):
        ERRORS_MD.write_text(text)
    assert ERRORS_MD.read_text() == text, "docs/errors.md is stale: UPDATE_DOCS=1 pytest db/tests/test_errors_doc.py"
