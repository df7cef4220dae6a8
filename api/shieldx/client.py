"""A Python client for applications: `Client` (sync) and `AsyncClient`, on httpx.

    from shieldx.client import Client
    with Client("http://127.0.0.1:8000", api_key="sx_...", tenant="acme") as sx:
        moved = sx.consume(42, 5)            # a Movement; an Idempotency-Key is made for the call
        print(moved.balance_after)

Every mutation carries an Idempotency-Key (yours, or a fresh UUID made once
per call), and the same key is sent again on every retry, so a retry can
never apply a call twice. Retried: connection errors and timeouts, 429, 5xx
(503 included), each after the server's Retry-After when it sends one, else
after a jittered exponential backoff ("full jitter": a uniform wait between 0
and min(cap, base x 2^attempt)). Every other answer is final: a named refusal
raises `Refused` carrying the problem's name, SQLSTATE and facts.

Auto-batching (`autobatch=True`): concurrent `consume` calls are coalesced
into one POST .../batches (non-atomic) per tenant: the first call waits at
most `linger_s` for others (or until `max_batch` calls are pending), then
sends them all; each caller gets its own Movement or its own `Refused`.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
import msgspec

from .models.batches import BatchApplied
from .models.credits import Account, AccountCreated, EntryPage, Movement, Tenant, Transfer
from .models.holds import Hold, HoldAborted, HoldCommitted, HoldView

T = TypeVar("T")

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class ShieldXError(Exception):
    """An answer that is not a success: the problem+json body's fields, when there is one."""

    def __init__(self, status: int, body: dict[str, Any] | None, message: str | None = None) -> None:
        self.status = status
        self.body = body or {}
        # The problem type names the error after its last "#" (or ":"): /docs/errors#insufficient_funds.
        self.name: str = re.split(r"[#:]", str(self.body.get("type", "")))[-1] or "http_error"
        self.sqlstate: str | None = self.body.get("sqlstate")
        self.title: str | None = self.body.get("title")
        self.detail: str | None = self.body.get("detail")
        self.facts: dict[str, Any] = self.body.get("facts") or {}
        super().__init__(message or f"{status} {self.name}: {self.detail or self.title or ''}".rstrip(": "))


class Refused(ShieldXError):
    """A final refusal (4xx): nothing changed; sending the same call again gets the same answer."""


class Unavailable(ShieldXError):
    """Still failing after every retry (connection errors, 429, 5xx). The call may or may not have
    applied: send it again with the same idempotency key to find out."""


@dataclass(frozen=True)
class Retry:
    attempts: int = 6  # tries in all, the first included
    base_s: float = 0.05
    cap_s: float = 2.0
    max_retry_after_s: float = 30.0  # a longer Retry-After is not waited for: Unavailable at once

    def backoff(self, attempt: int, rnd: Callable[[], float] = random.random) -> float:
        return rnd() * min(self.cap_s, self.base_s * 2**attempt)


def retry_after(response: httpx.Response) -> float | None:
    """Seconds the server asks to wait (Retry-After as seconds or as an HTTP date), if it says."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _error(response: httpx.Response) -> ShieldXError:
    try:
        body = response.json()
    except ValueError:
        body = None
    cls = Unavailable if response.status_code in RETRY_STATUSES else Refused
    return cls(response.status_code, body if isinstance(body, dict) else None)


def _decode(content: bytes, model: type[T]) -> T:
    return msgspec.json.decode(content, type=model)


def _movement(item: dict[str, Any]) -> Movement:
    return msgspec.convert(item["result"], Movement, strict=False)


def _item_refusal(item: dict[str, Any]) -> Refused:
    r = item["result"]
    body = {
        "type": f"/docs/errors#{r.get('error')}",
        "title": r.get("title"),
        "status": r.get("status"),
        "detail": r.get("message"),
        "sqlstate": item.get("sqlstate"),
        "facts": r.get("detail") or {},
    }
    return Refused(int(r.get("status") or 409), body)


@dataclass
class _Request:
    method: str
    path: str
    json: Any = None
    idempotency_key: str | None = None
    params: dict[str, Any] | None = None

    def headers(self) -> dict[str, str]:
        return {"Idempotency-Key": self.idempotency_key} if self.idempotency_key else {}


@dataclass
class Stats:
    requests: int = 0  # HTTP requests sent, retries included
    retries: int = 0
    batches: int = 0  # batch requests the auto-batcher sent


class _Api:
    """The routes as requests: shared by the sync and the async client."""

    def __init__(self, tenant: str | None) -> None:
        self.tenant = tenant

    def _t(self, tenant: str | None) -> str:
        t = tenant or self.tenant
        if not t:
            raise ValueError("no tenant: pass tenant= to the call or to the client")
        return t

    @staticmethod
    def key(key: str | None) -> str:
        return key or str(uuid.uuid4())

    def create_tenant(self, tenant: str, name: str) -> _Request:
        return _Request("PUT", f"/v1/tenants/{tenant}", {"name": name})

    def create_account(self, name: str, key: str | None, tenant: str | None) -> _Request:
        return _Request("POST", f"/v1/tenants/{self._t(tenant)}/accounts", {"name": name}, self.key(key))

    def get_account(self, account_id: int, tenant: str | None) -> _Request:
        return _Request("GET", f"/v1/tenants/{self._t(tenant)}/accounts/{account_id}")

    def list_entries(self, account_id: int, before: int | None, limit: int, tenant: str | None) -> _Request:
        params: dict[str, Any] = {"limit": limit} | ({"before": before} if before is not None else {})
        return _Request("GET", f"/v1/tenants/{self._t(tenant)}/accounts/{account_id}/entries", params=params)

    def movement(
        self, what: str, account_id: int, amount: int, reason: str | None, key: str | None, tenant: str | None
    ):
        body = {"amount": amount} | ({"reason": reason} if reason is not None else {})
        return _Request("POST", f"/v1/tenants/{self._t(tenant)}/accounts/{account_id}/{what}", body, self.key(key))

    def transfer(self, src: int, dst: int, amount: int, reason: str | None, key: str | None, tenant: str | None):
        body: dict[str, Any] = {"from_account": src, "to_account": dst, "amount": amount}
        body |= {"reason": reason} if reason is not None else {}
        return _Request("POST", f"/v1/tenants/{self._t(tenant)}/transfers", body, self.key(key))

    def reserve(self, account_id: int, amount: int, ttl_s: float, reason: str | None, key: str | None, tenant):
        body = {"amount": amount, "ttl_seconds": ttl_s} | ({"reason": reason} if reason is not None else {})
        return _Request("POST", f"/v1/tenants/{self._t(tenant)}/accounts/{account_id}/holds", body, self.key(key))

    def get_hold(self, hold_id: int, tenant: str | None) -> _Request:
        return _Request("GET", f"/v1/tenants/{self._t(tenant)}/holds/{hold_id}")

    def commit_hold(self, hold_id: int, amount: int | None, reason: str | None, tenant: str | None) -> _Request:
        body = {k: v for k, v in (("amount", amount), ("reason", reason)) if v is not None}
        return _Request("POST", f"/v1/tenants/{self._t(tenant)}/holds/{hold_id}/commit", body)

    def abort_hold(self, hold_id: int, tenant: str | None) -> _Request:
        return _Request("POST", f"/v1/tenants/{self._t(tenant)}/holds/{hold_id}/abort")

    def batch(self, items: list[dict[str, Any]], atomic: bool, tenant: str | None) -> _Request:
        return _Request("POST", f"/v1/tenants/{self._t(tenant)}/batches", {"items": items, "atomic": atomic})


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


@dataclass
class _Pending:
    item: dict[str, Any]
    done: threading.Event = field(default_factory=threading.Event)
    result: Movement | None = None
    error: BaseException | None = None


class Client:
    """Synchronous client. Thread-safe: one instance may serve many threads (and auto-batch them)."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        tenant: str | None = None,
        *,
        timeout: float = 10.0,
        retry: Retry | None = None,
        autobatch: bool = False,
        linger_s: float = 0.002,
        max_batch: int = 100,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.http = httpx.Client(base_url=base_url, headers=_headers(api_key), timeout=timeout, transport=transport)
        self.api = _Api(tenant)
        self.retry = retry or Retry()
        self.autobatch, self.linger_s, self.max_batch = autobatch, linger_s, max_batch
        self.stats = Stats()
        self._sleep = sleep
        self._lock = threading.Lock()
        self._pending: dict[str, list[_Pending]] = {}
        self._full: dict[str, threading.Event] = {}

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def send(self, req: _Request) -> httpx.Response:
        """Send with retries (same Idempotency-Key); return the final 2xx response or raise."""
        for attempt in range(self.retry.attempts):
            self.stats.requests += 1
            try:
                r = self.http.request(req.method, req.path, json=req.json, params=req.params, headers=req.headers())
            except httpx.TransportError as exc:
                if attempt + 1 == self.retry.attempts:
                    raise Unavailable(0, None, f"unreachable after {attempt + 1} tries: {exc!r}") from exc
                wait = self.retry.backoff(attempt)
            else:
                if r.status_code < 400:
                    return r
                if r.status_code not in RETRY_STATUSES or attempt + 1 == self.retry.attempts:
                    raise _error(r)
                asked = retry_after(r)
                if asked is not None and asked > self.retry.max_retry_after_s:
                    raise _error(r)
                wait = asked + self.retry.backoff(0) if asked is not None else self.retry.backoff(attempt)
            self.stats.retries += 1
            self._sleep(wait)
        raise AssertionError("unreachable")

    def _call(self, req: _Request, model: type[T]) -> T:
        return _decode(self.send(req).content, model)

    # --- routes ------------------------------------------------------------
    def create_tenant(self, tenant: str, name: str) -> Tenant:
        return self._call(self.api.create_tenant(tenant, name), Tenant)

    def create_account(self, name: str, *, key: str | None = None, tenant: str | None = None) -> AccountCreated:
        return self._call(self.api.create_account(name, key, tenant), AccountCreated)

    def get_account(self, account_id: int, *, tenant: str | None = None) -> Account:
        return self._call(self.api.get_account(account_id, tenant), Account)

    def list_entries(
        self, account_id: int, *, before: int | None = None, limit: int = 100, tenant: str | None = None
    ) -> EntryPage:
        return self._call(self.api.list_entries(account_id, before, limit, tenant), EntryPage)

    def grant(self, account_id: int, amount: int, *, reason=None, key=None, tenant=None) -> Movement:
        return self._call(self.api.movement("grants", account_id, amount, reason, key, tenant), Movement)

    def consume(self, account_id: int, amount: int, *, reason=None, key=None, tenant=None) -> Movement:
        if self.autobatch:
            item = {"op": "consume", "account_id": account_id, "amount": amount, "idempotency_key": _Api.key(key)}
            item |= {"reason": reason} if reason is not None else {}
            return self._batched(self.api._t(tenant), item)
        return self._call(self.api.movement("consume", account_id, amount, reason, key, tenant), Movement)

    def transfer(self, from_account: int, to_account: int, amount: int, *, reason=None, key=None, tenant=None):
        return self._call(self.api.transfer(from_account, to_account, amount, reason, key, tenant), Transfer)

    def reserve(self, account_id: int, amount: int, *, ttl_s: float = 300, reason=None, key=None, tenant=None) -> Hold:
        return self._call(self.api.reserve(account_id, amount, ttl_s, reason, key, tenant), Hold)

    def get_hold(self, hold_id: int, *, tenant: str | None = None) -> HoldView:
        return self._call(self.api.get_hold(hold_id, tenant), HoldView)

    def commit_hold(self, hold_id: int, amount: int | None = None, *, reason=None, tenant=None) -> HoldCommitted:
        return self._call(self.api.commit_hold(hold_id, amount, reason, tenant), HoldCommitted)

    def abort_hold(self, hold_id: int, *, tenant: str | None = None) -> HoldAborted:
        return self._call(self.api.abort_hold(hold_id, tenant), HoldAborted)

    def batch(self, items: list[dict[str, Any]], *, atomic: bool = True, tenant: str | None = None) -> BatchApplied:
        """POST .../batches: items as the route takes them (see docs/http-api.md)."""
        return self._call(self.api.batch(items, atomic, tenant), BatchApplied)

    # --- auto-batching -------------------------------------------------------
    def _batched(self, tenant: str, item: dict[str, Any]) -> Movement:
        me = _Pending(item)
        with self._lock:
            queue = self._pending.setdefault(tenant, [])
            queue.append(me)
            leader = len(queue) == 1
            if leader:
                self._full[tenant] = threading.Event()
            full = self._full[tenant]
            if len(queue) >= self.max_batch:
                full.set()
        if leader:
            full.wait(self.linger_s)  # linger: let concurrent callers join (at most linger_s)
            self._flush(tenant)
        me.done.wait()
        if me.error is not None:
            raise me.error
        assert me.result is not None
        return me.result

    def _flush(self, tenant: str) -> None:
        with self._lock:
            group = self._pending.pop(tenant, [])
            self._full.pop(tenant, None)
        for start in range(0, len(group), self.max_batch):
            _settle(group[start : start + self.max_batch], lambda items: self._send_batch(tenant, items))

    def _send_batch(self, tenant: str, items: list[dict[str, Any]]) -> dict[str, Any]:
        self.stats.batches += 1
        return self.send(self.api.batch(items, False, tenant)).json()


def _settle(group: list[Any], send: Callable[[list[dict[str, Any]]], dict[str, Any]]) -> None:
    """Send one batch for the group and hand every caller its own result or error."""
    try:
        answer = send([p.item for p in group])
    except Exception as exc:  # noqa: BLE001 - every caller of this batch gets the batch's error
        for p in group:
            p.error = exc
            p.done.set()
        return
    for p, item in zip(group, answer["items"], strict=True):
        if item["status"] == "refused":
            p.error = _item_refusal(item)
        else:
            p.result = _movement(item)
        p.done.set()


@dataclass
class _AsyncPending:
    item: dict[str, Any]
    done: asyncio.Event = field(default_factory=asyncio.Event)
    result: Movement | None = None
    error: BaseException | None = None


class AsyncClient:
    """asyncio client: the same methods as `Client`, awaited."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        tenant: str | None = None,
        *,
        timeout: float = 10.0,
        retry: Retry | None = None,
        autobatch: bool = False,
        linger_s: float = 0.002,
        max_batch: int = 100,
        transport: httpx.AsyncBaseTransport | None = None,
        limits: httpx.Limits | None = None,
    ) -> None:
        self.http = httpx.AsyncClient(
            base_url=base_url,
            headers=_headers(api_key),
            timeout=timeout,
            transport=transport,
            limits=limits or httpx.Limits(max_connections=100),
        )
        self.api = _Api(tenant)
        self.retry = retry or Retry()
        self.autobatch, self.linger_s, self.max_batch = autobatch, linger_s, max_batch
        self.stats = Stats()
        self._pending: dict[str, list[_AsyncPending]] = {}
        self._full: dict[str, asyncio.Event] = {}

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def send(self, req: _Request) -> httpx.Response:
        for attempt in range(self.retry.attempts):
            self.stats.requests += 1
            try:
                r = await self.http.request(
                    req.method, req.path, json=req.json, params=req.params, headers=req.headers()
                )
            except httpx.TransportError as exc:
                if attempt + 1 == self.retry.attempts:
                    raise Unavailable(0, None, f"unreachable after {attempt + 1} tries: {exc!r}") from exc
                wait = self.retry.backoff(attempt)
            else:
                if r.status_code < 400:
                    return r
                if r.status_code not in RETRY_STATUSES or attempt + 1 == self.retry.attempts:
                    raise _error(r)
                asked = retry_after(r)
                if asked is not None and asked > self.retry.max_retry_after_s:
                    raise _error(r)
                wait = asked + self.retry.backoff(0) if asked is not None else self.retry.backoff(attempt)
            self.stats.retries += 1
            await asyncio.sleep(wait)
        raise AssertionError("unreachable")

    async def _call(self, req: _Request, model: type[T]) -> T:
        return _decode((await self.send(req)).content, model)

    async def create_tenant(self, tenant: str, name: str) -> Tenant:
        return await self._call(self.api.create_tenant(tenant, name), Tenant)

    async def create_account(self, name: str, *, key: str | None = None, tenant: str | None = None) -> AccountCreated:
        return await self._call(self.api.create_account(name, key, tenant), AccountCreated)

    async def get_account(self, account_id: int, *, tenant: str | None = None) -> Account:
        return await self._call(self.api.get_account(account_id, tenant), Account)

    async def list_entries(
        self, account_id: int, *, before: int | None = None, limit: int = 100, tenant: str | None = None
    ) -> EntryPage:
        return await self._call(self.api.list_entries(account_id, before, limit, tenant), EntryPage)

    async def grant(self, account_id: int, amount: int, *, reason=None, key=None, tenant=None) -> Movement:
        return await self._call(self.api.movement("grants", account_id, amount, reason, key, tenant), Movement)

    async def consume(self, account_id: int, amount: int, *, reason=None, key=None, tenant=None) -> Movement:
        if self.autobatch:
            item = {"op": "consume", "account_id": account_id, "amount": amount, "idempotency_key": _Api.key(key)}
            item |= {"reason": reason} if reason is not None else {}
            return await self._batched(self.api._t(tenant), item)
        return await self._call(self.api.movement("consume", account_id, amount, reason, key, tenant), Movement)

    async def transfer(self, from_account: int, to_account: int, amount: int, *, reason=None, key=None, tenant=None):
        return await self._call(self.api.transfer(from_account, to_account, amount, reason, key, tenant), Transfer)

    async def reserve(self, account_id: int, amount: int, *, ttl_s: float = 300, reason=None, key=None, tenant=None):
        return await self._call(self.api.reserve(account_id, amount, ttl_s, reason, key, tenant), Hold)

    async def get_hold(self, hold_id: int, *, tenant: str | None = None) -> HoldView:
        return await self._call(self.api.get_hold(hold_id, tenant), HoldView)

    async def commit_hold(self, hold_id: int, amount: int | None = None, *, reason=None, tenant=None):
        return await self._call(self.api.commit_hold(hold_id, amount, reason, tenant), HoldCommitted)

    async def abort_hold(self, hold_id: int, *, tenant: str | None = None) -> HoldAborted:
        return await self._call(self.api.abort_hold(hold_id, tenant), HoldAborted)

    async def batch(self, items: list[dict[str, Any]], *, atomic: bool = True, tenant: str | None = None):
        return await self._call(self.api.batch(items, atomic, tenant), BatchApplied)

    async def _batched(self, tenant: str, item: dict[str, Any]) -> Movement:
        me = _AsyncPending(item)
        queue = self._pending.setdefault(tenant, [])
        queue.append(me)
        if len(queue) == 1:
            full = self._full[tenant] = asyncio.Event()
            try:
                await asyncio.wait_for(full.wait(), self.linger_s)
            except TimeoutError:
                pass
            group = self._pending.pop(tenant, [])
            self._full.pop(tenant, None)
            for start in range(0, len(group), self.max_batch):
                part = group[start : start + self.max_batch]
                try:
                    self.stats.batches += 1
                    answer = (await self.send(self.api.batch([p.item for p in part], False, tenant))).json()
                except Exception as exc:  # noqa: BLE001 - handed to every caller of this batch
                    for p in part:
                        p.error = exc
                        p.done.set()
                    continue
                for p, row in zip(part, answer["items"], strict=True):
                    if row["status"] == "refused":
                        p.error = _item_refusal(row)
                    else:
                        p.result = _movement(row)
                    p.done.set()
        elif len(queue) >= self.max_batch:
            self._full[tenant].set()
        await me.done.wait()
        if me.error is not None:
            raise me.error
        assert me.result is not None
        return me.result
