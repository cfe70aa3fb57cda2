"""Platform parameters (SPEC §4): one aggregate, ``platform``, every change an event.

The first command ever applied creates it with ``PlatformInitialised`` carrying every
default, so the store itself says which parameters were in force from the start.
"""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from eventsourcing.domain import event

from ledger.domain import ids
from ledger.domain.base import LedgerAggregate
from ledger.domain.errors import LedgerError
from ledger.domain.money import ONE, ZERO, decimal_places, fmt

QUOTE = "USDT"  # W1: the quote currency, price 1
D = Decimal


def default_parameters() -> dict[str, Any]:
    """The §4 defaults, as plain JSON-able data (they are recorded in the first event)."""
    return {
        "currencies": {c: 8 for c in ("USDT", "USDC", "BTC", "ETH", "KCS")},
        "prices": {"USDT": D(1), "USDC": D(1)},
        "tiers": {
            "USDT": [[None, D(1)]],
            "USDC": [[None, D(1)]],
            "BTC": [[D(500), D("0.98")], [D(1000), D("0.97")], [None, D("0.95")]],
            "ETH": [[None, D("0.95")]],
        },
        "allowances": {"USDT": D(2000)},
        "quotas": {"USDT": D(1_000_000), "BTC": D(20), "ETH": D(300)},
        "margin": {"liability": [D("0.2"), D("0.1")], "futures": [D("0.1"), D("0.05")]},
        "thresholds": {"alert": D("0.8"), "liquidation": D(1), "target": D("0.7")},
        "flags": {
            "whitelist_required": True,
            "beta_highest_vip_rate": True,
            "spot_margin_enabled": True,
        },
    }


class Platform(LedgerAggregate):
    """Currencies, prices, collateral tiers, rates, quotas, limits, margin rates, flags.

    Its state is bounded by what is registered (currencies, symbols, VIP levels), never by
    history: a price or a rate replaces the one before it (the one in force at an earlier
    instant is the state at that instant, ``LedgerApp.platform_at``), so its snapshot stays
    small however many prices were set."""

    KEYED_BY_LEVEL = ("quotas", "rates")

    def to_snapshot_state(self, state: dict[str, Any]) -> None:
        """JSON keys are strings: the books keyed by VIP level (an int, or None for all
        levels) are stored as [level, value] pairs."""
        for name in self.KEYED_BY_LEVEL:
            state[name] = {c: [[level, value] for level, value in levels.items()] for c, levels in state[name].items()}

    def from_snapshot_state(self) -> None:
        """The books keyed by VIP level again, and the tuples JSON gave back as lists: a
        platform loaded from its snapshot equals its replay."""
        self.quotas = {c: {level: amount for level, amount in pairs} for c, pairs in self.quotas.items()}
        self.rates = {c: {level: [tuple(r) for r in history] for level, history in pairs}
                      for c, pairs in self.rates.items()}
        self.tiers = {c: [tuple(t) for t in tiers] for c, tiers in self.tiers.items()}
        self.default_margin = {k: tuple(v) for k, v in self.default_margin.items()}
        self.margin_rates = {k: tuple(v) for k, v in self.margin_rates.items()}

    @staticmethod
    def create_id(**_: Any) -> str:
        return ids.PLATFORM

    @event("PlatformInitialised")
    def __init__(self, parameters: dict[str, Any], at: datetime) -> None:
        p = parameters
        self.currencies: dict[str, int] = dict(p["currencies"])
        self.prices: dict[str, Decimal] = dict(p["prices"])
        self.tiers: dict[str, list[tuple[Decimal | None, Decimal]]] = {
            c: [(up, ratio) for up, ratio in tiers] for c, tiers in p["tiers"].items()
        }
        self.allowances: dict[str, Decimal] = dict(p["allowances"])
        # per currency: {vip_level or None: amount}
        self.quotas: dict[str, dict[int | None, Decimal]] = {
            c: {None: amount} for c, amount in p["quotas"].items()
        }
        # per currency: {vip_level or None: [(at, hourly_rate)]}, the latest only
        self.rates: dict[str, dict[int | None, list[tuple[datetime, Decimal]]]] = {}
        self.platform_limits: dict[str, Decimal] = {}
        self.default_margin = {k: (v[0], v[1]) for k, v in p["margin"].items()}
        self.margin_rates: dict[str, tuple[Decimal, Decimal]] = {}
        self.thresholds: dict[str, Decimal] = dict(p["thresholds"])
        self.flags: dict[str, bool] = dict(p["flags"])
        self.initialised_at = at
        self.last_at: datetime | None = None  # defaults hold from the beginning of time

    # --- queries ---------------------------------------------------------------------
    def precision(self, currency: str) -> int:
        try:
            return self.currencies[currency]
        except KeyError:
            raise LedgerError("unknown_currency", f"currency {currency} is not registered") from None

    def check_amount(self, currency: str, amount: Decimal) -> None:
        """W1: a known currency and no more decimals than its precision."""
        places = self.precision(currency)
        if decimal_places(amount.normalize()) > places:  # by value: "1.000000000" is 1
            raise LedgerError(
                "validation_error",
                f"{currency} amounts have at most {places} decimals; got {fmt(amount)}",
            )

    def price(self, currency: str) -> Decimal:
        if currency == QUOTE:
            return ONE
        try:
            return self.prices[currency]
        except KeyError:
            raise LedgerError("no_price", f"no mark price is set for {currency}") from None

    def collateral_tiers(self, currency: str) -> list[tuple[Decimal | None, Decimal]]:
        return self.tiers.get(currency, [(None, ZERO)])  # §4: others 0

    def quota(self, currency: str, vip_level: int) -> Decimal:
        levels = self.quotas.get(currency, {})
        return levels.get(vip_level, levels.get(None, ZERO))

    def platform_limit(self, currency: str) -> Decimal | None:
        return self.platform_limits.get(currency)

    def liability_rates(self, currency: str) -> tuple[Decimal, Decimal]:
        return self.margin_rates.get(currency, self.default_margin["liability"])

    def futures_rates(self, symbol: str) -> tuple[Decimal, Decimal]:
        return self.margin_rates.get(symbol, self.default_margin["futures"])

    def allowance(self, currency: str) -> Decimal:
        return self.allowances.get(currency, ZERO)

    def check_symbol(self, symbol: str) -> str:
        base = symbol.removesuffix("-" + QUOTE)
        if base == QUOTE or base not in self.currencies:
            raise LedgerError("unknown_symbol", f"{symbol} is not BASE-USDT of a registered currency")
        return base

    def check_time(self, at: datetime) -> None:
        if self.last_at is not None and at < self.last_at:
            raise LedgerError(
                "out_of_order",
                f"platform parameters last changed at {self.last_at.isoformat()}; "
                f"{at.isoformat()} is earlier",
            )

    # --- parameter changes (each one event, §4) -----------------------------------------
    @event("CurrencyRegistered")
    def register_currency(self, currency: str, precision: int, at: datetime) -> None:
        self.currencies[currency] = precision
        self.last_at = at

    @event("PriceSet")
    def set_price(self, currency: str, price: Decimal, at: datetime) -> None:
        self.prices[currency] = price
        self.last_at = at

    @event("CollateralTiersSet")
    def set_collateral_tiers(self, currency: str, tiers: list[list[Any]], at: datetime) -> None:
        self.tiers[currency] = [(D(up) if up is not None else None, D(r)) for up, r in tiers]
        self.last_at = at

    @event("InterestRateSet")
    def set_interest_rate(
        self, currency: str, hourly_rate: Decimal, vip_level: int | None, at: datetime
    ) -> None:
        self.rates.setdefault(currency, {})[vip_level] = [(at, hourly_rate)]
        self.last_at = at

    @event("InterestFreeAllowanceSet")
    def set_interest_free_allowance(self, currency: str, amount: Decimal, at: datetime) -> None:
        self.allowances[currency] = amount
        self.last_at = at

    @event("BorrowQuotaSet")
    def set_borrow_quota(
        self, currency: str, amount: Decimal, vip_level: int | None, at: datetime
    ) -> None:
        self.quotas.setdefault(currency, {})[vip_level] = amount
        self.last_at = at

    @event("PlatformBorrowLimitSet")
    def set_platform_borrow_limit(
        self, currency: str, amount: Decimal | None, at: datetime
    ) -> None:
        if amount is None:
            self.platform_limits.pop(currency, None)
        else:
            self.platform_limits[currency] = amount
        self.last_at = at

    @event("MarginRatesSet")
    def set_margin_rates(self, target: str, imr: Decimal, mmr: Decimal, at: datetime) -> None:
        self.margin_rates[target] = (imr, mmr)
        self.last_at = at

    @event("RiskThresholdsSet")
    def set_risk_thresholds(
        self, alert: Decimal, liquidation: Decimal, target: Decimal, at: datetime
    ) -> None:
        self.thresholds = {"alert": alert, "liquidation": liquidation, "target": target}
        self.last_at = at

    @event("PlatformFlagsSet")
    def set_flags(self, flags: dict[str, bool], at: datetime) -> None:
        self.flags.update(flags)
        self.last_at = at
