"""The JSON command contract (SPEC §12) as pydantic models.

``parse_command(obj)`` turns one decoded JSON object into a typed command or raises
``LedgerError("validation_error", ...)``.  Amounts and prices are JSON strings of plain
decimals; numbers, exponents, signs, NaN and too many digits are refused here, before the
domain sees them.  Currency precision (W1) depends on platform state and is checked in the
domain with the same code.
"""
from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from ledger.domain.errors import LedgerError
from ledger.domain.times import parse_instant

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"  # M1
COMMAND_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$"
CURRENCY_PATTERN = r"^[A-Z0-9]{2,10}$"
SYMBOL_PATTERN = r"^[A-Z0-9]{2,10}-USDT$"
TEXT_PATTERN = r"^[^\x00-\x1f\x7f]*$"  # free text: no NUL nor other control characters (§12)
_DECIMAL = re.compile(r"^(0|[1-9][0-9]{0,14})(\.[0-9]{1,18})?$")
MAX_TIERS = 20
MAX_PERMISSIONS = 5  # M9: read, spot, futures, transfer, withdraw


def _decimal_string(value: Any) -> Decimal:
    if not isinstance(value, str):
        raise ValueError("must be a decimal string such as \"12.5\"")
    if not _DECIMAL.fullmatch(value):
        raise ValueError(
            "must be a non-negative plain decimal with at most 15 integer digits "
            "and 18 decimals"
        )
    return Decimal(value)


def _positive(value: Decimal) -> Decimal:
    if value <= 0:
        raise ValueError("must be greater than zero")
    return value


def _at_most_one(value: Decimal) -> Decimal:
    if value > 1:
        raise ValueError("must be at most 1")
    return value


NonNegative = Annotated[Decimal, BeforeValidator(_decimal_string)]
Positive = Annotated[Decimal, BeforeValidator(_decimal_string), AfterValidator(_positive)]
Ratio = Annotated[Decimal, BeforeValidator(_decimal_string), AfterValidator(_at_most_one)]
PositiveRatio = Annotated[Ratio, AfterValidator(_positive)]
Timestamp = Annotated[datetime, BeforeValidator(parse_instant)]
AccountId = Annotated[str, Field(pattern=ID_PATTERN)]
Currency = Annotated[str, Field(pattern=CURRENCY_PATTERN)]
Symbol = Annotated[str, Field(pattern=SYMBOL_PATTERN)]
VipLevel = Annotated[int, Field(ge=0, le=12, strict=True)]
Wallet = Literal["spot", "futures", "unified"]
Permission = Literal["read", "spot", "futures", "transfer", "withdraw"]


class Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    at: Timestamp | None = None
    command_id: Annotated[str, Field(pattern=COMMAND_ID_PATTERN)] | None = None
    api_key: AccountId | None = None

    @property
    def accounts(self) -> tuple[str, ...]:
        """The accounts the command acts on, first the one an API key must belong to."""
        account = getattr(self, "account", None)
        return (account,) if account else ()


# --- accounts and modes (M1-M9) ----------------------------------------------------------
class OpenAccount(Command):
    type: Literal["open_account"]
    account: AccountId
    parent: AccountId | None = None
    vip_level: VipLevel = 0


class Whitelist(Command):
    type: Literal["whitelist"]
    account: AccountId


class CompleteRiskAssessment(Command):
    type: Literal["complete_risk_assessment"]
    account: AccountId
    score: Annotated[int, Field(ge=0, le=100, strict=True)]
    agreements_version: Annotated[str, Field(min_length=1, max_length=64, pattern=TEXT_PATTERN)]


class SwitchMode(Command):
    type: Literal["switch_mode"]
    account: AccountId
    mode: Literal["classic", "unified"]


class ActivateUnified(Command):
    type: Literal["activate_unified"]
    account: AccountId


class CreateApiKey(Command):
    type: Literal["create_api_key"]
    account: AccountId
    key_id: AccountId
    unified: bool = False
    permissions: Annotated[list[Permission], Field(min_length=1, max_length=MAX_PERMISSIONS)]

    @model_validator(mode="after")
    def _unique_permissions(self) -> "CreateApiKey":
        if len(set(self.permissions)) != len(self.permissions):
            raise ValueError("permissions must not repeat")
        return self


# --- money movements (W1-W4) -------------------------------------------------------------
class Deposit(Command):
    type: Literal["deposit"]
    account: AccountId
    currency: Currency
    amount: Positive
    wallet: Wallet | None = None


class Withdraw(Command):
    type: Literal["withdraw"]
    account: AccountId
    currency: Currency
    amount: Positive
    wallet: Wallet | None = None


class Transfer(Command):
    type: Literal["transfer"]
    from_account: AccountId
    to_account: AccountId
    currency: Currency
    amount: Positive
    from_wallet: Wallet | None = None
    to_wallet: Wallet | None = None

    @property
    def accounts(self) -> tuple[str, ...]:
        return (self.from_account, self.to_account)


# --- orders (O1-O3) ----------------------------------------------------------------------
class PlaceOrder(Command):
    type: Literal["place_order"]
    account: AccountId
    order_id: AccountId
    market: Literal["spot", "futures"]
    symbol: Symbol
    side: Literal["buy", "sell"]
    qty: Positive
    price: Positive


class CancelOrder(Command):
    type: Literal["cancel_order"]
    account: AccountId
    order_id: AccountId


class FillOrder(Command):
    type: Literal["fill_order"]
    account: AccountId
    order_id: AccountId
    qty: Positive
    price: Positive
    fee: NonNegative = Decimal(0)


# --- borrowing (B3) ----------------------------------------------------------------------
class Borrow(Command):
    type: Literal["borrow"]
    account: AccountId
    currency: Currency
    amount: Positive


class Repay(Command):
    type: Literal["repay"]
    account: AccountId
    currency: Currency
    amount: Positive


# --- platform parameters (§4) ------------------------------------------------------------
class RegisterCurrency(Command):
    type: Literal["register_currency"]
    currency: Currency
    precision: Annotated[int, Field(ge=0, le=18, strict=True)]


class SetPrice(Command):
    type: Literal["set_price"]
    currency: Currency
    price: Positive


class Tier(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    up_to: Positive | None
    ratio: Ratio


class SetCollateralTiers(Command):
    type: Literal["set_collateral_tiers"]
    currency: Currency
    tiers: Annotated[list[Tier], Field(min_length=1, max_length=MAX_TIERS)]

    @model_validator(mode="after")
    def _ascending_and_open_ended(self) -> "SetCollateralTiers":
        bounds = [tier.up_to for tier in self.tiers]
        if bounds[-1] is not None:
            raise ValueError("the last tier's up_to must be null")
        finite = bounds[:-1]
        if any(bound is None for bound in finite):
            raise ValueError("only the last tier may have a null up_to")
        if any(a >= b for a, b in zip(finite, finite[1:])):  # type: ignore[operator]
            raise ValueError("tier bounds must increase")
        return self


class SetInterestRate(Command):
    type: Literal["set_interest_rate"]
    currency: Currency
    hourly_rate: Ratio
    vip_level: VipLevel | None = None


class SetInterestFreeAllowance(Command):
    type: Literal["set_interest_free_allowance"]
    currency: Currency
    amount: NonNegative


class SetBorrowQuota(Command):
    type: Literal["set_borrow_quota"]
    currency: Currency
    amount: NonNegative
    vip_level: VipLevel | None = None


class SetPlatformBorrowLimit(Command):
    type: Literal["set_platform_borrow_limit"]
    currency: Currency
    amount: NonNegative | None  # null removes the limit


class SetMarginRates(Command):
    type: Literal["set_margin_rates"]
    currency: Currency | None = None
    symbol: Symbol | None = None
    imr: PositiveRatio
    mmr: PositiveRatio

    @model_validator(mode="after")
    def _one_target(self) -> "SetMarginRates":
        if (self.currency is None) == (self.symbol is None):
            raise ValueError("give exactly one of currency or symbol")
        if self.mmr > self.imr:
            raise ValueError("mmr must not exceed imr")
        return self


class SetRiskThresholds(Command):
    type: Literal["set_risk_thresholds"]
    alert: Positive
    liquidation: Positive
    target: Positive

    @model_validator(mode="after")
    def _ordered(self) -> "SetRiskThresholds":
        if not self.target < self.liquidation or not self.alert <= self.liquidation:
            raise ValueError("need target < liquidation and alert <= liquidation")
        return self


class SetPlatformFlags(Command):
    type: Literal["set_platform_flags"]
    whitelist_required: Annotated[bool, Field(strict=True)] | None = None
    beta_highest_vip_rate: Annotated[bool, Field(strict=True)] | None = None
    spot_margin_enabled: Annotated[bool, Field(strict=True)] | None = None

    @model_validator(mode="after")
    def _something(self) -> "SetPlatformFlags":
        if not self.flags():
            raise ValueError("name at least one flag")
        return self

    def flags(self) -> dict[str, bool]:
        names = ("whitelist_required", "beta_highest_vip_rate", "spot_margin_enabled")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


AnyCommand = Annotated[
    Union[
        OpenAccount, Whitelist, CompleteRiskAssessment, SwitchMode, ActivateUnified,
        CreateApiKey, Deposit, Withdraw, Transfer, PlaceOrder, CancelOrder, FillOrder,
        Borrow, Repay, RegisterCurrency, SetPrice, SetCollateralTiers, SetInterestRate,
        SetInterestFreeAllowance, SetBorrowQuota, SetPlatformBorrowLimit, SetMarginRates,
        SetRiskThresholds, SetPlatformFlags,
    ],
    Field(discriminator="type"),
]
_ADAPTER: TypeAdapter[Command] = TypeAdapter(AnyCommand)
COMMAND_TYPES = sorted(_ADAPTER.json_schema()["discriminator"]["mapping"])


def parse_command(obj: Any) -> Command:
    """One decoded JSON object → a typed command, or ``validation_error`` with a sentence."""
    if not isinstance(obj, dict):
        raise LedgerError("validation_error", f"a command must be a JSON object, not {_json_kind(obj)}")
    kind = obj.get("type")
    if "type" not in obj:
        raise LedgerError("validation_error", 'the object has no "type": a command names its type, such as "deposit"')
    if kind not in COMMAND_TYPES:
        shown = repr(kind) if len(repr(kind)) <= 60 else repr(kind)[:60] + "…"
        raise LedgerError("validation_error", f"unknown command type {shown}")
    try:
        return _ADAPTER.validate_python(obj)
    except ValidationError as exc:
        raise LedgerError("validation_error", _sentence(exc)) from None


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, (int, float, Decimal)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "an array"
    return type(value).__name__


def _sentence(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"][1:]) or "command"
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "is not a field of this command"
    more = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
    return f"{where}: {message}{more}"
