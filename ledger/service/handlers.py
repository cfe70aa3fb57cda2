"""The service layer: one handler per command type (SPEC §12).

A handler runs inside one command of the unit of work (``u``, see ``UnitOfWork.command``):
it loads what it needs through it, runs every guard, then calls the aggregates' event
methods.  It knows nothing of storage, the CLI or the clock: the command's instant is ``u.at``.
"""
from __future__ import annotations

from typing import Callable

from ledger.domain import commands as c
from ledger.domain.account import UNIFIED, Account
from ledger.domain.errors import LedgerError
from ledger.domain.indexes import ApiKeyIndex
from ledger.domain.margin import BorrowLimit, account_borrow_limit
from ledger.domain.money import ZERO, fmt
from ledger.domain.platform import QUOTE
from ledger.domain.trading import fill_order, place_order
from ledger.service.unit_of_work import UnitOfWork

Handler = Callable[[UnitOfWork, c.Command], None]
HANDLERS: dict[type[c.Command], Handler] = {}

# M10: what an API key must hold for each command (any one of the set).  Orders need their
# market's permission (see required_permissions).  Every other command refuses API keys:
# deposits, fills, whitelist entries, risk assessments, activations and platform commands are
# facts from the exchange's own services (FACTS); opening accounts, switching modes and
# creating keys are internal administration.
TRADING = frozenset({"spot", "futures"})
PERMISSIONS: dict[type[c.Command], frozenset[str]] = {
    c.Transfer: frozenset({"transfer"}), c.Withdraw: frozenset({"withdraw"}),
    c.Borrow: TRADING, c.Repay: TRADING,
}
FACTS: dict[type[c.Command], str] = {
    c.Deposit: "deposits", c.FillOrder: "fills", c.Whitelist: "whitelist entries",
    c.CompleteRiskAssessment: "risk assessments", c.ActivateUnified: "activations",
}


def handles(kind: type[c.Command]) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        HANDLERS[kind] = fn
        return fn
    return register


def execute(u: UnitOfWork, cmd: c.Command) -> None:
    """Run one command inside ``with uow.command(at) as u:``."""
    if cmd.api_key is not None:
        check_api_key(u, cmd)
    HANDLERS[type(cmd)](u, cmd)


def required_permissions(cmd: c.Command, acct: Account) -> frozenset[str]:
    """M10: the permissions of which a key needs one for ``cmd`` on ``acct``; empty: no key
    may do it."""
    if isinstance(cmd, c.PlaceOrder):
        return frozenset({cmd.market})
    if isinstance(cmd, c.CancelOrder):
        return frozenset({acct.open_order(cmd.order_id)["market"]})
    return PERMISSIONS.get(type(cmd), frozenset())


def check_api_key(u: UnitOfWork, cmd: c.Command) -> None:
    """M9, M10: the key belongs to the command's account, allows the command, and is unified
    when the account is."""
    key = u.api_key(cmd.api_key or "")
    if key is None:
        raise LedgerError("unknown_api_key", f"no API key {cmd.api_key}")
    action = cmd.type.replace("_", " ")
    owner = cmd.accounts[0] if cmd.accounts else None
    if owner is None:
        raise LedgerError("api_key_forbidden", f"API keys may not {action}: platform commands are internal")
    if key.account != owner:
        raise LedgerError("api_key_wrong_account", f"API key {key.key_id} belongs to {key.account}, not {owner}")
    if type(cmd) in FACTS:
        raise LedgerError("api_key_forbidden", f"API keys may not {action}: {FACTS[type(cmd)]} are facts "
                                               "from the exchange's own services (M10)")
    acct = u.account(key.account)
    permissions = acct.api_keys[key.key_id]["permissions"]
    needed = required_permissions(cmd, acct)
    if not needed.intersection(permissions):
        wants = " or ".join(sorted(needed))
        why = f"it needs the {wants} permission" if needed else "this is internal administration"
        raise LedgerError("api_key_forbidden", f"API key {key.key_id} may not {action}: {why}")
    if acct.mode == UNIFIED and not acct.api_keys[key.key_id]["unified"]:
        raise LedgerError("api_key_not_unified", f"{acct.account} is unified; key {key.key_id} lacks the unified option")


def touch(u: UnitOfWork, account: str) -> Account:
    acct = u.account(account)
    acct.check_time(u.at)
    return acct


def master_of(u: UnitOfWork, acct: Account) -> Account | None:
    return u.account(acct.parent) if acct.parent else None


# --- accounts and modes ----------------------------------------------------------------------
@handles(c.OpenAccount)
def open_account(u: UnitOfWork, cmd: c.OpenAccount) -> None:
    if u.find_account(cmd.account) is not None:
        raise LedgerError("account_exists", f"account {cmd.account} is already open")
    if cmd.parent is not None:
        parent = u.account(cmd.parent)
        if not parent.is_master:
            raise LedgerError("parent_not_master", f"{cmd.parent} is a sub-account; sub-accounts have no sub-accounts")
    u.add(Account(account=cmd.account, parent=cmd.parent, vip_level=cmd.vip_level, at=u.at))


@handles(c.Whitelist)
def whitelist(u: UnitOfWork, cmd: c.Whitelist) -> None:
    acct = touch(u, cmd.account)
    acct.require_master("join the Unified beta whitelist")
    if not acct.whitelisted:
        acct.whitelist(u.at)


@handles(c.CompleteRiskAssessment)
def complete_risk_assessment(u: UnitOfWork, cmd: c.CompleteRiskAssessment) -> None:
    acct = touch(u, cmd.account)
    acct.require_master("complete the risk assessment")
    acct.complete_risk_assessment(cmd.score, cmd.agreements_version, u.at)


@handles(c.SwitchMode)
def switch_mode(u: UnitOfWork, cmd: c.SwitchMode) -> None:
    acct = touch(u, cmd.account)
    acct.switch_mode(cmd.mode, u.platform, master_of(u, acct), u.at)


@handles(c.ActivateUnified)
def activate_unified(u: UnitOfWork, cmd: c.ActivateUnified) -> None:
    touch(u, cmd.account).activate_unified(u.platform, u.at)


@handles(c.CreateApiKey)
def create_api_key(u: UnitOfWork, cmd: c.CreateApiKey) -> None:
    acct = touch(u, cmd.account)
    if u.api_key(cmd.key_id) is not None:
        raise LedgerError("api_key_exists", f"an API key {cmd.key_id} exists")
    if cmd.unified and not acct.is_master and acct.mode != UNIFIED:
        acct.switch_mode(UNIFIED, u.platform, master_of(u, acct), u.at)  # M8
    acct.create_api_key(cmd.key_id, cmd.unified, list(cmd.permissions), u.at)
    u.add(ApiKeyIndex(key_id=cmd.key_id, account=cmd.account, at=u.at))


# --- money movements ---------------------------------------------------------------------------
@handles(c.Deposit)
def deposit(u: UnitOfWork, cmd: c.Deposit) -> None:
    acct = touch(u, cmd.account)
    platform = u.platform
    platform.check_amount(cmd.currency, cmd.amount)
    wallet = acct.check_wallet(cmd.wallet)
    acct.deposited(cmd.currency, cmd.amount, wallet, u.at)
    acct.auto_repay(cmd.currency, cmd.amount, "deposit", platform, u.at)  # R1


@handles(c.Withdraw)
def withdraw(u: UnitOfWork, cmd: c.Withdraw) -> None:
    acct = touch(u, cmd.account)
    platform = u.platform
    platform.check_amount(cmd.currency, cmd.amount)
    wallet = acct.check_wallet(cmd.wallet)
    acct.check_can_pay_out(cmd.currency, cmd.amount, wallet, platform)
    acct.withdrawn(cmd.currency, cmd.amount, wallet, u.at)


def check_family(src: Account, dst: Account) -> None:
    """W3: master ↔ its own subs, sub ↔ sub of one master, or one account's own wallets."""
    if src.account == dst.account:
        return
    if src.parent == dst.account or dst.parent == src.account:
        return
    if src.parent is not None and src.parent == dst.parent:
        return
    raise LedgerError("transfer_not_allowed", f"{src.account} and {dst.account} are not in one master's family")


@handles(c.Transfer)
def transfer(u: UnitOfWork, cmd: c.Transfer) -> None:
    src = touch(u, cmd.from_account)
    dst = touch(u, cmd.to_account)
    check_family(src, dst)
    platform = u.platform
    platform.check_amount(cmd.currency, cmd.amount)
    from_wallet, to_wallet = src.check_wallet(cmd.from_wallet), dst.check_wallet(cmd.to_wallet)
    if src is dst and from_wallet == to_wallet:
        raise LedgerError("transfer_not_allowed", f"a transfer within {src.account} needs two different wallets")
    src.check_can_pay_out(cmd.currency, cmd.amount, from_wallet, platform)
    if src is dst:
        src.wallet_transferred(cmd.currency, cmd.amount, from_wallet, to_wallet, u.at)
        return
    src.transferred_out(dst.account, cmd.currency, cmd.amount, from_wallet, u.at)
    dst.transferred_in(src.account, cmd.currency, cmd.amount, to_wallet, u.at)
    dst.auto_repay(cmd.currency, cmd.amount, "transfer_in", platform, u.at)  # R1


# --- orders ------------------------------------------------------------------------------------
def limit_of(uow: UnitOfWork, acct: Account, currency: str) -> BorrowLimit:
    return account_borrow_limit(acct, currency, uow.platform, uow.platform_owed)


@handles(c.PlaceOrder)
def place(u: UnitOfWork, cmd: c.PlaceOrder) -> None:
    acct = touch(u, cmd.account)
    place_order(acct, cmd, u.platform, lambda cur: limit_of(u, acct, cur).limit, u.at)


@handles(c.CancelOrder)
def cancel(u: UnitOfWork, cmd: c.CancelOrder) -> None:
    touch(u, cmd.account).cancel_order(cmd.order_id, u.at)


@handles(c.FillOrder)
def fill(u: UnitOfWork, cmd: c.FillOrder) -> None:
    fill_order(touch(u, cmd.account), cmd, u.platform, u.at)


# --- borrowing ----------------------------------------------------------------------------------
@handles(c.Borrow)
def borrow(u: UnitOfWork, cmd: c.Borrow) -> None:
    """B3: borrow explicitly within B2."""
    acct = touch(u, cmd.account)
    acct.check_unified()
    u.platform.check_amount(cmd.currency, cmd.amount)
    limit = limit_of(u, acct, cmd.currency)
    if cmd.amount > limit.personal:
        raise LedgerError(
            "borrow_limit_exceeded",
            f"{acct.account} may borrow at most {fmt(limit.personal)} {cmd.currency} (quota and margin); "
            f"{fmt(cmd.amount)} asked",
        )
    if cmd.amount > limit.limit:
        raise LedgerError(
            "platform_limit_exceeded",
            f"the platform may lend {fmt(limit.limit)} more {cmd.currency}; {fmt(cmd.amount)} asked",
        )
    acct.borrowed(cmd.currency, cmd.amount, "manual", False, u.at)


@handles(c.Repay)
def repay(u: UnitOfWork, cmd: c.Repay) -> None:
    """B3/R2: repay from cash, never more than owed (a larger amount repays all that is owed)."""
    acct = touch(u, cmd.account)
    platform = u.platform
    platform.check_amount(cmd.currency, cmd.amount)
    owed = acct.liability(cmd.currency)
    if not owed:
        raise LedgerError("nothing_to_repay", f"{acct.account} owes no {cmd.currency}")
    amount = min(cmd.amount, owed)
    available = acct.available(cmd.currency, platform)
    if amount > available:
        raise LedgerError(
            "insufficient_balance",
            f"{acct.account} has {fmt(max(available, ZERO))} {cmd.currency} available; repaying {fmt(amount)} needs more",
        )
    acct.repay(cmd.currency, amount, "manual", u.at)


# --- platform parameters ---------------------------------------------------------------------
def params(u: UnitOfWork):  # type: ignore[no-untyped-def]
    platform = u.platform
    platform.check_time(u.at)
    return platform


@handles(c.RegisterCurrency)
def register_currency(u: UnitOfWork, cmd: c.RegisterCurrency) -> None:
    platform = params(u)
    if cmd.currency in platform.currencies:
        raise LedgerError("validation_error", f"currency {cmd.currency} is already registered")
    platform.register_currency(cmd.currency, cmd.precision, u.at)


@handles(c.SetPrice)
def set_price(u: UnitOfWork, cmd: c.SetPrice) -> None:
    """§4, §16: a new mark.  It books nothing on the holders: their UPL-generated liability is
    derived where a rule reads it (``ledger.domain.derived``), so a tick writes its PriceSet
    (and the platform's snapshot) whatever the number of holders.  A mark at or before an
    hour already charged would change that hour's derived figure: refused (I6)."""
    platform = params(u)
    platform.check_amount(QUOTE, cmd.price)
    if cmd.currency == QUOTE:
        raise LedgerError("validation_error", "USDT is the quote currency; its price is always 1")
    platform.precision(cmd.currency)
    if u.holders(f"{cmd.currency}-{QUOTE}").accounts:
        check_interest_open(u)
    platform.set_price(cmd.currency, cmd.price, u.at)


def known(u: UnitOfWork, currency: str):  # type: ignore[no-untyped-def]
    platform = params(u)
    platform.precision(currency)
    return platform


@handles(c.SetCollateralTiers)
def set_collateral_tiers(u: UnitOfWork, cmd: c.SetCollateralTiers) -> None:
    tiers = [[t.up_to, t.ratio] for t in cmd.tiers]
    known(u, cmd.currency).set_collateral_tiers(cmd.currency, tiers, u.at)


def check_interest_open(u: UnitOfWork) -> None:
    """I5/I6: a parameter that decides interest cannot change at or before a charged hour."""
    closed = u.interest_clock().closed_until
    if closed is not None and u.at <= closed:
        raise LedgerError("out_of_order", f"interest is charged up to {closed.isoformat()}; "
                                          "parameters in force then can no longer change")


@handles(c.SetInterestRate)
def set_interest_rate(u: UnitOfWork, cmd: c.SetInterestRate) -> None:
    platform = known(u, cmd.currency)
    check_interest_open(u)
    platform.set_interest_rate(cmd.currency, cmd.hourly_rate, cmd.vip_level, u.at)


@handles(c.SetInterestFreeAllowance)
def set_interest_free_allowance(u: UnitOfWork, cmd: c.SetInterestFreeAllowance) -> None:
    platform = known(u, cmd.currency)
    check_interest_open(u)
    platform.check_amount(cmd.currency, cmd.amount)
    platform.set_interest_free_allowance(cmd.currency, cmd.amount, u.at)


@handles(c.SetBorrowQuota)
def set_borrow_quota(u: UnitOfWork, cmd: c.SetBorrowQuota) -> None:
    platform = known(u, cmd.currency)
    platform.check_amount(cmd.currency, cmd.amount)
    platform.set_borrow_quota(cmd.currency, cmd.amount, cmd.vip_level, u.at)


@handles(c.SetPlatformBorrowLimit)
def set_platform_borrow_limit(u: UnitOfWork, cmd: c.SetPlatformBorrowLimit) -> None:
    platform = known(u, cmd.currency)
    if cmd.amount is not None:
        platform.check_amount(cmd.currency, cmd.amount)
    platform.set_platform_borrow_limit(cmd.currency, cmd.amount, u.at)


@handles(c.SetMarginRates)
def set_margin_rates(u: UnitOfWork, cmd: c.SetMarginRates) -> None:
    platform = params(u)
    if cmd.symbol is not None:
        platform.check_symbol(cmd.symbol)
    else:
        platform.precision(cmd.currency or "")
    platform.set_margin_rates(cmd.symbol or cmd.currency or "", cmd.imr, cmd.mmr, u.at)


@handles(c.SetRiskThresholds)
def set_risk_thresholds(u: UnitOfWork, cmd: c.SetRiskThresholds) -> None:
    params(u).set_risk_thresholds(cmd.alert, cmd.liquidation, cmd.target, u.at)


@handles(c.SetPlatformFlags)
def set_platform_flags(u: UnitOfWork, cmd: c.SetPlatformFlags) -> None:
    platform = params(u)
    if cmd.beta_highest_vip_rate is not None:
        check_interest_open(u)
    platform.set_flags(cmd.flags(), u.at)


assert set(HANDLERS) == set(c.AnyCommand.__origin__.__args__), "a command type has no handler"  # type: ignore[attr-defined]
