"""stockpipe's own settings: every ``STOCKPIPE_*`` setting, its default and its variable.

One place, as django-pghistory's ``config.py``: the settings module reads each option from
the environment (``environment_settings``), code reads it through the function named after
it, and the README's configuration table lists them all (a test compares the two). Tests may
override any of them with ``settings``/``override_settings``; the function reads it at call
time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings


@dataclass(frozen=True)
class Option:
    name: str
    default: Any
    kind: str  # how the environment variable is parsed: str, int, float, bool
    doc: str


OPTIONS: tuple[Option, ...] = (
    Option("STOCKPIPE_MANAGER_EMAIL", "manager@company.com", "str", "who gets low-stock alerts"),
    Option("STOCKPIPE_LOW_STOCK_THRESHOLD", 5, "int", "default threshold of new products"),
    Option(
        "STOCKPIPE_DEFAULT_LOCATION",
        "MAIN",
        "str",
        "code of the location a stock change naming no location applies to (created on first use)",
    ),
    Option(
        "STOCKPIPE_LOW_STOCK_ON",
        "available",
        "str",
        "what low-stock alerts compare with the threshold: available (on hand minus active "
        "reservations) or on_hand",
    ),
    Option(
        "STOCKPIPE_RESERVATION_TTL",
        86400,
        "int",
        "seconds a reservation holds stock when the request gives no expires_at",
    ),
    Option(
        "STOCKPIPE_RESERVATION_EXPIRING_SOON",
        21600,
        "int",
        "the dashboard lists active reservations that lapse within this many seconds",
    ),
    Option(
        "STOCKPIPE_DELIVERY_BACKOFF_BASE",
        30.0,
        "float",
        "first retry delay of an alert or webhook, in seconds (doubles per attempt)",
    ),
    Option("STOCKPIPE_DELIVERY_BACKOFF_MAX", 3600.0, "float", "longest retry delay, in seconds"),
    Option(
        "STOCKPIPE_DELIVERY_MAX_ATTEMPTS", 25, "int", "attempts before an alert e-mail is failed"
    ),
    Option(
        "STOCKPIPE_DELIVERY_LEASE",
        300.0,
        "float",
        "seconds a worker may hold a claimed alert or webhook before another retries it",
    ),
    Option(
        "STOCKPIPE_WEBHOOK_MAX_ATTEMPTS", 12, "int", "attempts before a webhook is dead-lettered"
    ),
    Option(
        "STOCKPIPE_WEBHOOK_TIMEOUT",
        15.0,
        "float",
        "seconds a webhook delivery waits to connect, and then for each read of the answer",
    ),
    Option(
        "STOCKPIPE_WEBHOOK_SECRET_OVERLAP",
        86400.0,
        "float",
        "seconds a rotated-out webhook secret still signs webhook-signature beside the new one",
    ),
    Option(
        "STOCKPIPE_WEBHOOK_ALLOW_PRIVATE_NETWORKS",
        False,
        "bool",
        "let webhooks reach loopback/private addresses (refused by default)",
    ),
    Option(
        "STOCKPIPE_WEBHOOK_SUBSCRIPTION_CACHE",
        2.0,
        "float",
        "seconds a process remembers which subscriptions exist when no shared cache tells it of changes",
    ),
    Option(
        "STOCKPIPE_API_CACHE",
        None,
        "bool",
        "cache API product bodies and token identities (unset: only with a shared cache)",
    ),
    Option(
        "STOCKPIPE_LOGIN_THROTTLE_RATE", "10/min", "str", "API login attempts per client address"
    ),
    Option("STOCKPIPE_TOKEN_THROTTLE_RATE", "10/hour", "str", "API tokens created per user"),
    Option(
        "STOCKPIPE_LOGIN_ACCOUNT_FAILURE_LIMIT",
        5,
        "int",
        "failed logins that lock an account, from any address",
    ),
    Option(
        "STOCKPIPE_LOGIN_ADDRESS_FAILURE_LIMIT",
        20,
        "int",
        "failed logins that lock a client address, over any accounts",
    ),
    Option(
        "STOCKPIPE_LOGIN_COOLOFF_MINUTES",
        15,
        "int",
        "minutes without a failure after which a login lock ends",
    ),
    Option(
        "STOCKPIPE_NUM_PROXIES",
        1,
        "int",
        "production: proxies in front of the app (nginx) whose X-Forwarded-For is trusted",
    ),
    Option(
        "STOCKPIPE_RETAIN_OUTBOX_DAYS",
        30,
        "int",
        "manage.py prune: days to keep delivered webhook outbox rows and their attempts",
    ),
    Option(
        "STOCKPIPE_RETAIN_TASK_RESULT_DAYS",
        14,
        "int",
        "manage.py prune: days to keep finished task results (database task backend)",
    ),
    Option(
        "STOCKPIPE_RETAIN_RUN_PAYLOAD_DAYS",
        90,
        "int",
        "manage.py prune: days to keep the spec and result of finished pipeline runs",
    ),
    Option(
        "STOCKPIPE_RETAIN_PRICE_HISTORY_DAYS",
        None,
        "int",
        "manage.py prune: days to keep price history (unset: for ever; never under 30)",
    ),
    Option(
        "STOCKPIPE_RETAIN_LEDGER_DAYS",
        None,
        "int",
        "manage.py prune: days of stock ledger detail (unset: for ever; older rows fold)",
    ),
    Option(
        "STOCKPIPE_RETAIN_AUDIT_DAYS",
        None,
        "int",
        "manage.py prune: days to keep the deletion audit (unset: for ever)",
    ),
    Option(
        "STOCKPIPE_REPLICA_READ_YOUR_WRITES",
        5.0,
        "float",
        "seconds after a write during which the same session or API token reads the primary, "
        "not the read replica (afterwards, until the replica has replayed the write)",
    ),
    Option(
        "STOCKPIPE_REPLICA_RETRY",
        10.0,
        "float",
        "seconds a process reads the primary after the read replica failed to connect "
        "before trying it again (the fallback is logged once per try)",
    ),
)

_BY_NAME = {option.name: option for option in OPTIONS}


def environment_settings(env: Any) -> dict[str, Any]:
    """Each option read from its environment variable (a ``django-environ`` ``Env``)."""
    values = {}
    for option in OPTIONS:
        parse: Callable[..., Any] = getattr(env, option.kind)
        values[option.name] = parse(option.name, default=option.default)
    return values


def get(name: str) -> Any:
    """The current value of option ``name`` (settings first, else its default)."""
    return getattr(settings, name, _BY_NAME[name].default)


def manager_email() -> str:
    return get("STOCKPIPE_MANAGER_EMAIL")


def low_stock_threshold() -> int:
    return int(get("STOCKPIPE_LOW_STOCK_THRESHOLD"))


def default_location() -> str:
    return str(get("STOCKPIPE_DEFAULT_LOCATION"))


def low_stock_on_available() -> bool:
    """Whether alerts watch available stock (the default) rather than stock on hand."""
    return str(get("STOCKPIPE_LOW_STOCK_ON")).strip().lower() != "on_hand"


def reservation_ttl() -> int:
    return int(get("STOCKPIPE_RESERVATION_TTL"))


def reservation_expiring_soon() -> int:
    return int(get("STOCKPIPE_RESERVATION_EXPIRING_SOON"))


def delivery_backoff_base() -> float:
    return float(get("STOCKPIPE_DELIVERY_BACKOFF_BASE"))


def delivery_backoff_max() -> float:
    return float(get("STOCKPIPE_DELIVERY_BACKOFF_MAX"))


def delivery_lease() -> float:
    return float(get("STOCKPIPE_DELIVERY_LEASE"))


def webhook_timeout() -> float:
    return float(get("STOCKPIPE_WEBHOOK_TIMEOUT"))


def webhook_secret_overlap() -> float:
    return float(get("STOCKPIPE_WEBHOOK_SECRET_OVERLAP"))


def webhook_allow_private_networks() -> bool:
    return bool(get("STOCKPIPE_WEBHOOK_ALLOW_PRIVATE_NETWORKS"))


def webhook_subscription_cache() -> float:
    return float(get("STOCKPIPE_WEBHOOK_SUBSCRIPTION_CACHE"))


def api_cache() -> bool | None:
    value = get("STOCKPIPE_API_CACHE")
    return None if value is None else bool(value)


def login_throttle_rate() -> str:
    return get("STOCKPIPE_LOGIN_THROTTLE_RATE")


def token_throttle_rate() -> str:
    return get("STOCKPIPE_TOKEN_THROTTLE_RATE")


def login_address_failure_limit() -> int:
    return int(get("STOCKPIPE_LOGIN_ADDRESS_FAILURE_LIMIT"))


_RETENTION = {
    "outbox_days": "STOCKPIPE_RETAIN_OUTBOX_DAYS",
    "task_result_days": "STOCKPIPE_RETAIN_TASK_RESULT_DAYS",
    "run_payload_days": "STOCKPIPE_RETAIN_RUN_PAYLOAD_DAYS",
    "price_history_days": "STOCKPIPE_RETAIN_PRICE_HISTORY_DAYS",
    "ledger_days": "STOCKPIPE_RETAIN_LEDGER_DAYS",
    "audit_days": "STOCKPIPE_RETAIN_AUDIT_DAYS",
}


def retention_days(kind: str) -> int | None:
    """Days ``manage.py prune`` keeps rows of ``kind`` (a ``RetentionPolicy`` field)."""
    value = get(_RETENTION[kind])
    return None if value is None else int(value)


def replica_read_your_writes() -> float:
    return float(get("STOCKPIPE_REPLICA_READ_YOUR_WRITES"))


def replica_retry() -> float:
    return float(get("STOCKPIPE_REPLICA_RETRY"))
