"""Rate limits of the public endpoints: a small in-process token bucket per client.

Each *scope* has its own limit, configured from the environment as ``N/unit``
(unit ``second``, ``minute``, ``hour`` or ``day``; ``s``/``m``/``h``/``d`` also
work), or ``off``:

- ``XUNJIAN_RATE_LIMIT`` (default ``60/minute``): Open311 ``POST requests.json``,
  per API key (per client IP while the key is missing or unknown);
- ``XUNJIAN_RATE_LIMIT_READ`` (default ``600/minute``): the Open311 GET
  endpoints, per client IP;
- ``XUNJIAN_RATE_LIMIT_LOGIN`` (default ``20/minute``): ``POST /api/auth/login``,
  per client IP.

A bucket holds ``N`` tokens (the burst) and refills at ``N`` per unit; a request
takes one. Over the limit the answer is 429 with ``Retry-After`` (seconds until
a token is back). The buckets live in the process (``app.state.ratelimiter``,
made from the environment on first use): with several server processes each
counts on its own, so the effective limit is N × processes. The client IP is
the peer address; behind a reverse proxy run uvicorn with ``--proxy-headers
--forwarded-allow-ips=<proxy>`` so that it is the real client's.

Tests set a small limit directly: ``live.app.state.ratelimiter = Limiter({"open311_post": "3/minute"})``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import NamedTuple

from fastapi import HTTPException, Request

log = logging.getLogger("xunjian.ratelimit")

#: scope → (environment variable, default limit)
SCOPES: dict[str, tuple[str, str]] = {
    "open311_post": ("XUNJIAN_RATE_LIMIT", "60/minute"),
    "open311_read": ("XUNJIAN_RATE_LIMIT_READ", "600/minute"),
    "login": ("XUNJIAN_RATE_LIMIT_LOGIN", "20/minute"),
}
UNITS = {"second": 1, "s": 1, "sec": 1, "minute": 60, "m": 60, "min": 60, "hour": 3600, "h": 3600, "day": 86400, "d": 86400}
UNIT_ZH = {1: "秒", 60: "分钟", 3600: "小时", 86400: "天"}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*([a-z]+)\s*$")
MAX_BUCKETS = 50_000  # beyond this, full (idle) buckets are dropped


class Rate(NamedTuple):
    """``count`` requests per ``period_s`` seconds (and a burst of ``count``)."""

    count: int
    period_s: int

    @property
    def per_s(self) -> float:
        return self.count / self.period_s

    def __str__(self) -> str:
        unit = UNIT_ZH.get(self.period_s, f"{self.period_s} 秒")
        return f"每{unit}最多 {self.count} 次"


def parse_rate(text: str | None) -> Rate | None:
    """``"60/minute"`` → Rate(60, 60); ``"off"`` (or ``0/…``) → None (no limit)."""
    if text is None or text.strip().lower() in ("off", "none", "0", "unlimited", ""):
        return None
    m = _RATE.match(text.lower())
    if not m or m.group(2) not in UNITS:
        raise ValueError(f"rate limit {text!r}: expected N/second, N/minute, N/hour, N/day or off")
    count = int(m.group(1))
    return Rate(count, UNITS[m.group(2)]) if count > 0 else None


class RateLimited(HTTPException):
    """429 with ``Retry-After``; ``detail`` is the Chinese message."""

    def __init__(self, rate: Rate, retry_after_s: float):
        wait = max(1, math.ceil(retry_after_s))
        super().__init__(429, f"请求过于频繁：{rate}，请 {wait} 秒后再试", headers={"Retry-After": str(wait)})
        self.retry_after = wait


class Limiter:
    """Token buckets per (scope, key). ``limits``: scope → ``"N/unit"``, a :class:`Rate`
    or None (unlimited); scopes not given are unlimited."""

    def __init__(self, limits: Mapping[str, str | Rate | None], *, clock: Callable[[], float] = time.monotonic):
        self.limits: dict[str, Rate | None] = {k: v if isinstance(v, Rate) or v is None else parse_rate(v)
                                               for k, v in limits.items()}
        self.clock = clock
        self._buckets: dict[tuple[str, str], list[float]] = {}  # [tokens, last refill time]
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Limiter:
        env = os.environ if env is None else env
        limits = {}
        for scope, (var, default) in SCOPES.items():
            try:
                limits[scope] = parse_rate(env.get(var, default))
            except ValueError as e:
                log.error("%s: %s; using the default %s", var, e, default)
                limits[scope] = parse_rate(default)
        return cls(limits)

    def hit(self, scope: str, key: str) -> None:
        """Take a token for ``key`` in ``scope``; :class:`RateLimited` when none is left."""
        rate = self.limits.get(scope)
        if rate is None:
            return
        now = self.clock()
        with self._lock:
            b = self._buckets.get((scope, key))
            if b is None:
                if len(self._buckets) >= MAX_BUCKETS:
                    self._prune(now)
                b = self._buckets[(scope, key)] = [float(rate.count), now]
            else:
                b[0] = min(float(rate.count), b[0] + (now - b[1]) * rate.per_s)
                b[1] = now
            if b[0] >= 1.0:
                b[0] -= 1.0
                return
            retry = (1.0 - b[0]) / rate.per_s
        raise RateLimited(rate, retry)

    def _prune(self, now: float) -> None:
        """Drop buckets that have refilled completely (they are as good as new)."""
        for k, (tokens, last) in list(self._buckets.items()):
            rate = self.limits.get(k[0])
            if rate is None or tokens + (now - last) * rate.per_s >= rate.count:
                del self._buckets[k]


_create_lock = threading.Lock()


def limiter(request: Request) -> Limiter:
    """The app's limiter, made from the environment on first use."""
    state = request.app.state
    lim = getattr(state, "ratelimiter", None)
    if lim is None:
        with _create_lock:
            lim = getattr(state, "ratelimiter", None)
            if lim is None:
                lim = state.ratelimiter = Limiter.from_env()
    return lim


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def key_of_secret(secret: str) -> str:
    """A bucket key for an API key that does not keep the key itself in memory."""
    return "key:" + hashlib.sha256(secret.encode()).hexdigest()[:32]


def check(request: Request, scope: str, key: str | None = None) -> None:
    """Count this request in ``scope`` for ``key`` (default: the client IP)."""
    limiter(request).hit(scope, key or "ip:" + client_ip(request))


def limit(scope: str) -> Callable[[Request], None]:
    """A dependency counting each request per client IP, e.g.
    ``@router.post("/auth/login", dependencies=[Depends(limit("login"))])``."""

    def dependency(request: Request) -> None:
        check(request, scope)

    return dependency
