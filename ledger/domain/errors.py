"""The one place where failures get their stable codes (SPEC §12).

Every rejected command answers ``{"ok": false, "error": {"code", "message"}}``; the code is
one of ``CODES`` and the message is a human sentence.  Domain code raises ``LedgerError``
with a code from this table and nothing else.
"""
from __future__ import annotations

CODES: dict[str, str] = {
    # input and ordering (§11, §12)
    "validation_error": "the command is not well formed",
    "out_of_order": "the command's `at` is earlier than the account's last event (T1, I6)",
    "future_time": "the instant is later than the ledger's clock plus the allowance (T4)",
    "command_id_conflict": "the command_id was used before with different content (T2)",
    "conflict": "another writer changed the same account at the same time, or the store kept refusing the "
                "transaction (a lock or statement timeout); nothing was applied: retry (M6, §13)",
    # accounts (M1-M9)
    "account_exists": "an account with this id is already open (M1)",
    "unknown_account": "no account has this id",
    "parent_not_master": "a sub-account's parent must be a master (M1)",
    "not_master": "only a master account may do this (M3, M4, M7)",
    "not_whitelisted": "the master is not on the beta whitelist (M3)",
    "risk_assessment_required": "the master has not completed the risk assessment (M4)",
    "master_not_eligible": "the sub-account's master has neither upgraded nor activated (M5)",
    "already_in_mode": "the account is already in that mode (M5)",
    "already_activated": "the master has already activated Unified mode (M7)",
    "open_positions": "the account has an open futures position (M5)",
    "pending_orders": "the account has an open order (M5)",
    "outstanding_liabilities": "the account owes something or has a negative balance (M5)",
    "not_unified": "the account is not in unified mode (B3)",
    "api_key_exists": "an API key with this id exists (M9)",
    "unknown_api_key": "no API key has this id (M9)",
    "api_key_wrong_account": "the API key belongs to another account (M9)",
    "api_key_forbidden": "no API key may record this command, or the key lacks the permission it needs (M9, M10)",
    "api_key_not_unified": "a unified account needs an API key with the unified option (M9)",
    # money (W1-W4)
    "unknown_currency": "the currency is not registered (W1)",
    "unknown_wallet": "the account has no such wallet in its mode (W2, W3)",
    "insufficient_balance": "the available balance does not cover the amount (W2, O1, B3)",
    "insufficient_margin": "the account's adjusted equity would not cover its initial margin (W2)",
    "transfer_not_allowed": "transfers go only within one master's family (W3)",
    # orders (O1-O3)
    "order_exists": "an order with this id exists on the account (O1)",
    "unknown_order": "the account has no open order with this id (O2)",
    "overfill": "the fill is larger than what is left of the order (O2)",
    "price_outside_limit": "a fill price is worse than the order's limit price (O2)",
    "unknown_symbol": "the symbol is not BASE-USDT of a registered currency (O1)",
    # margin and borrowing (F1-F6, B1-B4)
    "no_price": "a needed mark price has not been set (§4)",
    "borrow_limit_exceeded": "the amount is above the account's borrowing limit (B2, B3)",
    "platform_limit_exceeded": "the amount is above what the platform may still lend (B2, B3)",
    "nothing_to_repay": "the account owes nothing in this currency (B3)",
    # the network service (§15): each answers {"error": {"code", "message"}} with its HTTP status
    "unauthorized": "no token, an unknown one, or a revoked one (HTTP 401)",
    "forbidden": "the token lacks the scope this request needs (HTTP 403)",
    "not_found": "no such path, or nothing at it (HTTP 404)",
    "method_not_allowed": "the path does not take this method (HTTP 405)",
    "payload_too_large": "the request body is larger than LEDGER_SERVE_MAX_BODY_BYTES (HTTP 413)",
    "views_not_built": "the read models have not been built in this store (HTTP 503)",
    "unavailable": "the store does not answer, or the service is stopping (HTTP 503)",
    "internal_error": "the service failed; the request may or may not have been applied (HTTP 500)",
    # tokens (§15)
    "token_exists": "a token with this name is in use (revoke it first)",
    "unknown_token": "no token has this name",
    "unknown_scope": "a scope is none of ingest, read, report, audit, admin",
    # reading (§13 reports and the audit)
    "period_not_applicable": "the report is of a state at one instant (--as-of) or of facts over a period "
                             "(--since/--until), and was given the other",
    "inverted_period": "--since is later than --until",
    "unknown_report": "no report or format of that name (HTTP 404 from the service)",
    "bad_signature": "the digest's signature does not verify with the public key",
    # the proof of liabilities (§17)
    "no_secret": "the proof of liabilities needs the operator's secret (--secret-file, LEDGER_LIABILITIES_SECRET_FILE "
                 "or LEDGER_LIABILITIES_SECRET), 16 bytes or more",
    "negative_amount": "an account's cash or liability is negative: a Merkle sum tree never holds one",
    "output_exists": "the output directory holds files already, or cannot be written",
    "bad_proof": "a proof or root file that cannot be read, is not JSON, or is not of the form "
                 "`ledger audit liabilities` writes",
    # stress scenarios (§17)
    "invalid_shock": "a --shock is not CUR=P% (P a percentage above -100 and at most 1000) of a priced currency "
                     "other than USDT, given once each; at least one is needed",
}


class LedgerError(Exception):
    """A rejected command: a stable ``code`` from ``CODES`` and a human ``message``."""

    def __init__(self, code: str, message: str) -> None:
        assert code in CODES, f"unregistered error code {code!r}"
        super().__init__(message)
        self.code = code
        self.message = message

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class StaleRead(Exception):
    """An attempt read its aggregates at different moments (another writer committed between
    two reads), so an invariant across aggregates does not hold in memory — e.g. a lending
    pool read after a repayment that the accounts, read earlier, have not seen.  Nothing was
    saved; the attempt is retried from fresh state like a version conflict (``ledger.adapters.retry``)."""
