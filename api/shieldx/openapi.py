"""The OpenAPI document and the /docs page.

`config()` configures the document (served at /docs/openapi.json) and its
Swagger UI page at /docs (also /docs/swagger). The page loads its scripts and
styles from /docs/assets, which serves the Swagger UI files shipped by the
installed `litestar-offline-docs` package: /docs needs no network access.

`document(app)` adds what Litestar cannot see from the handlers: the bearer
key scheme (the app-wide guard, shieldx/auth.py) and the problem+json answers
of the guard and the error handlers (shieldx/errors.py) on every operation.
"""

from __future__ import annotations

import html
import importlib.util
from pathlib import Path
from typing import Any

import msgspec
from litestar import MediaType, Request, Router, get
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import (
    Components,
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Reference,
    Schema,
    SecurityScheme,
)
from litestar.static_files import create_static_files_router

from .auth import PUBLIC_PREFIXES
from .errors import API_ERRORS, PROBLEM, catalog

DOCS = "/docs"
ASSETS = f"{DOCS}/assets"
ASSET_PACKAGE = "litestar_offline_docs"


def assets_dir() -> Path:
    """The Swagger UI files of the installed asset package (found without importing it)."""
    spec = importlib.util.find_spec(ASSET_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the package {ASSET_PACKAGE} (Swagger UI assets for /docs) is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


def assets_router() -> Router:
    """GET /docs/assets/<file>: the page's scripts and styles (public, like the rest of /docs)."""
    return create_static_files_router(path=ASSETS, directories=[assets_dir()], name="docs-assets", opt={"public": True})


ERRORS_INTRO = (
    "Every refusal of the API is an RFC 9457 problem (application/problem+json) whose <code>type</code> "
    "is this page's address with the error's name as fragment, and whose <code>instance</code> is the "
    "request's path. A 4xx answer means nothing changed. The named errors are the database's catalog "
    "(ops.error_codes(); docs/errors.md in the repository is generated from it)."
)


@get(
    f"{DOCS}/errors",
    summary="Every error a problem type names, one anchor (#name) each",
    media_type=MediaType.HTML,
    include_in_schema=False,
    opt={"public": True},
)
async def errors_page(request: Request) -> str:
    """The page problem `type` URIs point at (<page>#<name>), rendered from the catalog."""
    try:
        await catalog.ensure(request.app.state.database)
    except Exception:  # noqa: BLE001, S110 - the database is down: the API's own errors are still listed
        pass
    rows = [(sqlstate, *entry) for sqlstate, entry in sorted(catalog.by_sqlstate.items())]
    rows += [("", name, status, title) for name, (status, title, _) in API_ERRORS.items()]
    sections = "".join(
        f'<section id="{html.escape(name)}"><h2>{html.escape(sqlstate)} {html.escape(name)}</h2>'
        f"<p><b>{html.escape(title)}</b>. HTTP {status}"
        + (f"; SQLSTATE <code>{html.escape(sqlstate)}</code>" if sqlstate else "")
        + (f". {html.escape(API_ERRORS[name][2])}" if name in API_ERRORS else "")
        + ".</p></section>\n"
        for sqlstate, name, status, title in rows
    )
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>ShieldX errors</title></head>'
        f"<body><h1>Errors</h1><p>{ERRORS_INTRO}</p>\n{sections}</body></html>\n"
    )


def config() -> OpenAPIConfig:
    swagger = SwaggerRenderPlugin(
        js_url=f"{ASSETS}/swagger-ui-bundle.js",
        css_url=f"{ASSETS}/swagger-ui.css",
        standalone_preset_js_url=f"{ASSETS}/swagger-ui-standalone-preset.js",
        path=["/", "/swagger"],
        favicon="",  # the default one is fetched from a CDN
    )
    return OpenAPIConfig(title="ShieldX Credits & Shadow", version="1.0.0", path=DOCS, render_plugins=[swagger])


# --- what the guard and the error handlers may answer ------------------------
PROBLEM_FIELDS: dict[str, OpenAPIType] = {
    "type": OpenAPIType.STRING,
    "title": OpenAPIType.STRING,
    "status": OpenAPIType.INTEGER,
    "detail": OpenAPIType.STRING,
    "sqlstate": OpenAPIType.STRING,
    "facts": OpenAPIType.OBJECT,
    "errors": OpenAPIType.ARRAY,
    "help": OpenAPIType.STRING,
}
PROBLEM_REQUIRED = ["type", "title", "status", "detail"]
# What each status means here; the titles of the named errors are in ops.error_catalog.
ERRORS = {
    "400": "Malformed request or JSON body (syntax, a member twice, nested too deep)",
    "401": "No valid API key (the body's `help` says how to get one)",
    "403": "The API key lacks a required role",
    "404": "Unknown tenant, account or key (another tenant's ids are unknown too)",
    "405": "Method not allowed",
    "409": "Conflict with the current state (funds, status, idempotency key)",
    "413": "Request body or batch too large",
    "415": "The request body is not application/json",
    "422": "Invalid argument",
    "429": "Rate limit exceeded (see Retry-After)",
    "503": "Database unavailable or circuit open (see Retry-After)",
}
PUBLIC_ERRORS = ("400", "405", "413", "415", "422", "503")


def _strict_structs(app: Any) -> set[str]:
    """Names of the request body structs (and the structs inside them) that refuse unknown members."""
    found: set[str] = set()

    def walk(t: Any) -> None:
        if isinstance(t, msgspec.inspect.StructType):
            if t.cls.__struct_config__.forbid_unknown_fields:
                found.add(t.cls.__name__)
            for f in t.fields:
                walk(f.type)
        elif isinstance(t, msgspec.inspect.Metadata):
            walk(t.type)
        elif isinstance(t, msgspec.inspect.UnionType):
            for member in t.types:
                walk(member)
        elif isinstance(t, (msgspec.inspect.ListType, msgspec.inspect.SetType, msgspec.inspect.FrozenSetType)):
            walk(t.item_type)
        elif isinstance(t, msgspec.inspect.DictType):
            walk(t.value_type)

    for route in app.routes:
        for handler in getattr(route, "route_handlers", ()):
            data = handler.parsed_fn_signature.parameters.get("data")
            if data is not None:
                walk(msgspec.inspect.type_info(data.annotation))
    return found


def document(app: Any) -> None:
    """Add the bearer scheme, problem+json answers to every operation, and `additionalProperties: false`
    on the bodies that refuse unknown members (msgspec's forbid_unknown_fields, which Litestar leaves out)."""
    openapi = app.openapi_schema
    components = openapi.components or Components()
    for name in _strict_structs(app):
        schema = (components.schemas or {}).get(name)
        if isinstance(schema, Schema):
            schema.additional_properties = False
    components.security_schemes = {
        **(components.security_schemes or {}),
        "ApiKey": SecurityScheme(
            type="http",
            scheme="bearer",
            description="Authorization: Bearer sx_<key_id>_<secret> (or the X-API-Key header)",
        ),
    }
    components.schemas = {
        **(components.schemas or {}),
        "Problem": Schema(
            type=OpenAPIType.OBJECT,
            required=PROBLEM_REQUIRED,
            description="RFC 9457 problem details",
            properties={name: Schema(type=kind) for name, kind in PROBLEM_FIELDS.items()},
        ),
    }
    openapi.components = components
    problem_schema = Reference(ref="#/components/schemas/Problem")
    retry: dict[str, OpenAPIHeader | Reference] = {
        "Retry-After": OpenAPIHeader(schema=Schema(type=OpenAPIType.STRING), description="seconds")
    }
    integer = Schema(type=OpenAPIType.INTEGER)
    rate: dict[str, OpenAPIHeader | Reference] = {
        "RateLimit-Limit": OpenAPIHeader(schema=integer, description="The key's burst (tokens)"),
        "RateLimit-Remaining": OpenAPIHeader(
            schema=integer, description="Tokens left, as of this process's last lease"
        ),
        "RateLimit-Reset": OpenAPIHeader(schema=integer, description="Seconds until the key's bucket is full again"),
    }
    string = Schema(type=OpenAPIType.STRING)
    request_id: dict[str, OpenAPIHeader | Reference] = {
        "X-Request-ID": OpenAPIHeader(
            schema=string,
            description="The request's id: the caller's X-Request-ID when acceptable (at most 128 printable "
            "characters), else a new one; also in the access log and PostgreSQL's application_name",
        )
    }
    challenge: dict[str, OpenAPIHeader | Reference] = {
        "WWW-Authenticate": OpenAPIHeader(schema=string, description='Bearer realm="shieldx"')
    }
    public_ops = {
        (route.path_format, method.lower())
        for route in app.routes
        for handler in getattr(route, "route_handlers", ())
        if handler.opt.get("public")
        for method in getattr(handler, "http_methods", ())
    }
    for path, item in (openapi.paths or {}).items():
        for method in ("get", "put", "post", "delete", "patch"):
            op = getattr(item, method, None)
            if op is None:
                continue
            public = path.startswith(PUBLIC_PREFIXES) or (path, method) in public_ops
            op.responses = dict(op.responses or {})
            for code, text in ERRORS.items():
                # Litestar's own 400 entry describes a body we never send (errors.py answers problem+json).
                if (public and code not in PUBLIC_ERRORS) or (code in op.responses and code != "400"):
                    continue
                if code == "415" and op.request_body is None:  # only a body can have the wrong media type
                    continue
                op.responses[code] = OpenAPIResponse(
                    description=text,
                    content={PROBLEM: OpenAPIMediaType(schema=problem_schema)},
                    headers=retry if code in ("429", "503") else None,
                )
            for code in ("429", "503"):  # a route's own description of these keeps the Retry-After header
                response = op.responses.get(code)
                if isinstance(response, OpenAPIResponse):
                    response.headers = {**retry, **(response.headers or {})}
            if not public:
                op.security = [{"ApiKey": []}]
                for code, response in op.responses.items():
                    if isinstance(response, OpenAPIResponse) and code not in ("401", "503"):
                        response.headers = {**(response.headers or {}), **rate}
            for code, response in op.responses.items():
                if isinstance(response, OpenAPIResponse):  # on every answer (shieldx/observability)
                    response.headers = {
                        **(response.headers or {}),
                        **request_id,
                        **(challenge if code == "401" else {}),
                    }
