"""Aggregate ids: the one place that spells them.  Every aggregate's id is its kind and, for
most kinds, a name: ``account/alice``, ``pool/USDT``, ``holders/BTC-USDT``.  Ids are stored
with every event: changing one of these spellings orphans what is stored under the old one."""
from __future__ import annotations

PLATFORM = "platform"  # parameters, prices, flags (SPEC §4)
INTEREST_DUE = "interest/due"  # the accounts that may owe interest at the next hour (I1)
RISK_ALERTED = "risk/alerted"  # the accounts whose risk alert stands (L4)
INTEREST_CLOCK = "interest/clock"  # the last hour charged for every account (I5)
ACCOUNT_PREFIX = "account/"
POOL_PREFIX = "pool/"


def account(name: str) -> str:
    return f"{ACCOUNT_PREFIX}{name}"


def account_name(aggregate_id: str) -> str:
    """``account/alice`` -> ``alice``."""
    return aggregate_id.removeprefix(ACCOUNT_PREFIX)


def pool(currency: str) -> str:
    """What all accounts owe of ``currency`` (B2, L2)."""
    return f"{POOL_PREFIX}{currency}"


def holders(symbol: str) -> str:
    """The accounts with a position in the futures market ``symbol``."""
    return f"holders/{symbol}"


def api_key(key_id: str) -> str:
    return f"apikey/{key_id}"


def command(command_id: str) -> str:
    """The record of the command an idempotency key stands for (T2)."""
    return f"command/{command_id}"


def run_log(job: str) -> str:
    """The summaries of a scheduled job's runs (``interest``, ``sweep``)."""
    return f"runs/{job}"
