"""Bodies of the credits ledger routes (credits.*): tenants, accounts, movements, the journal."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

from .bounds import Amount, Id, Name, Reason, documented


class TenantIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Name


class Tenant(msgspec.Struct):
    tenant_id: str
    name: str
    created_at: datetime
    replayed: bool


class AccountIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Name


class AccountCreated(msgspec.Struct):
    account_id: int
    tenant_id: str
    name: str
    status: str
    created_at: datetime
    replayed: bool


class Account(msgspec.Struct):
    account_id: int
    tenant_id: str
    name: str
    status: str
    balance: int
    held: int
    available: int
    entry_seq: int
    created_at: datetime


class AccountSummary(msgspec.Struct):
    account_id: int
    name: str
    status: str
    balance: int
    held: int
    available: int
    created_at: datetime


class AccountPage(msgspec.Struct):
    items: list[AccountSummary]
    next_cursor: int | None  # pass back as ?cursor= for the next page; null on the last one


class AccountStatusIn(msgspec.Struct, forbid_unknown_fields=True):
    status: Annotated[str, documented(enum=["open", "frozen", "closed"])]  # credits.set_account_status


class AccountStatusChange(msgspec.Struct):
    account_id: int
    status: str
    changed: bool


class AmountIn(msgspec.Struct, forbid_unknown_fields=True):
    amount: Amount
    reason: Reason | None = None


class Movement(msgspec.Struct):
    entry_id: int
    account_id: int
    amount: int
    balance_after: int
    seq: int
    created_at: datetime
    replayed: bool


class TransferIn(msgspec.Struct, forbid_unknown_fields=True):
    from_account: Id
    to_account: Id
    amount: Amount
    reason: Reason | None = None


class Transfer(msgspec.Struct):
    debit_entry_id: int
    credit_entry_id: int
    from_account: int
    to_account: int
    amount: int
    from_balance_after: int
    to_balance_after: int
    created_at: datetime
    replayed: bool


class Entry(msgspec.Struct):
    entry_id: int
    seq: int
    kind: str
    amount: int
    balance_after: int
    reason: str | None
    idem_key: str
    counterparty: int | None
    created_at: datetime


class EntryPage(msgspec.Struct):
    items: list[Entry]
    next_cursor: int | None  # pass back as ?cursor= for the next page; null on the last one
