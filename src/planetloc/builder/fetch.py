"""Polite, fault-tolerant HTTP for imagery and LVLM providers.

Each provider gets its own concurrency cap, token-bucket rate limit, circuit breaker and
retry policy: exponential backoff with jitter on 429, 5xx, timeouts and dropped connections,
``Retry-After`` honoured provider-wide. Payloads are checked before they are accepted, so an
HTML error page served with status 200 is retried like a 500 and never reaches the dataset.
Every message passes through a :class:`Redactor` so keys and tokens never reach logs,
reports or quarantine files.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from planetloc.builder.config import HttpConfig
from planetloc.errors import PlanetlocError

log = logging.getLogger("planetloc.builder")

T = TypeVar("T")

_SECRET_PARAMS = re.compile(
    r"((?:api[_-]?key|access_token|token|key|sig|signature|apikey)=)[^&\s\"']+", re.IGNORECASE
)


class Redactor:
    """Masks known secret values and secret-looking query parameters in any text."""

    def __init__(self, secrets: list[str] | None = None) -> None:
        self.secrets = [s for s in (secrets or []) if s]

    def add(self, secret: str | None) -> None:
        if secret and secret not in self.secrets:
            self.secrets.append(secret)

    def __call__(self, text: str) -> str:
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        return _SECRET_PARAMS.sub(r"\1***", text)


class RedactingFilter(logging.Filter):
    """Defence in depth: scrub every log record of known secrets."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redactor(record.getMessage())
        record.args = None
        return True


class BadResponse(Exception):
    """The provider answered, but with something unusable (wrong type, truncated, malformed)."""


class FetchFailed(Exception):
    """A request that failed for good; the sample it belongs to is quarantined."""

    def __init__(
        self, reason: str, attempts: list[str], status: int | None = None, body: bytes = b""
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.attempts = attempts
        self.status = status  # the HTTP status of a definitive 4xx answer
        self.body = body  # the start of that answer's body (error documents say why)


class ProviderUnavailable(PlanetlocError):
    """The provider is down or refuses our credentials: stop the stage, keep finished work."""


# How much of a definitive error answer is kept for callers to read (OGC or JSON error bodies).
ERROR_BODY_BYTES = 8192

Refusal = Callable[[httpx.Response], str | None]


def refused_by_status(response: httpx.Response) -> str | None:
    """HTTP 401/403: the service refused the key or token the request carried."""
    if response.status_code in (401, 403):
        return f"HTTP {response.status_code}"
    return None


class TokenBucket:
    """Average ``rate`` requests per second with bursts of at most ``burst``."""

    def __init__(
        self,
        rate: float,
        burst: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.rate = rate
        self.burst = max(1.0, burst)
        self.clock = clock
        self.sleep = sleep
        self.tokens = self.burst
        self.stamp = clock()
        self.lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self.lock:
            now = self.clock()
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens < 1.0:
                await self.sleep((1.0 - self.tokens) / self.rate)
                self.stamp = self.clock()
                self.tokens = 0.0
            else:
                self.tokens -= 1.0


class CircuitBreaker:
    """Opens after ``threshold`` consecutive failures, probes after a cooldown.

    While open, callers wait instead of failing, and failures during an outage use up no
    request's attempts, so an outage pauses the build rather than quarantining samples. If
    the provider stays down for ``max_outage_s`` the stage stops with
    :class:`ProviderUnavailable`.
    """

    def __init__(
        self,
        name: str,
        threshold: int,
        cooldown_s: float,
        max_outage_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.threshold = threshold
        self.base_cooldown = cooldown_s
        self.cooldown = cooldown_s
        self.max_outage_s = max_outage_s
        self.clock = clock
        self.state = "closed"
        self.failures = 0
        self.outage_since: float | None = None
        self.open_until = 0.0
        self.last_reason = ""
        self.opened = 0

    async def wait(self) -> None:
        while True:
            if self.state == "closed":
                return
            now = self.clock()
            if self.outage_since is not None and now - self.outage_since > self.max_outage_s:
                raise ProviderUnavailable(
                    f"{self.name}: unreachable for {now - self.outage_since:.0f} s "
                    f"(last error: {self.last_reason}); finished work is kept, "
                    "run the same command again to resume"
                )
            if self.state == "open":
                if now < self.open_until:
                    await asyncio.sleep(min(self.open_until - now, 1.0))
                    continue
                self.state = "half-open"  # this caller is the probe
                return
            await asyncio.sleep(0.02)  # another caller's probe is in flight

    def success(self) -> None:
        self.state = "closed"
        self.failures = 0
        self.cooldown = self.base_cooldown
        self.outage_since = None

    def failure(self, reason: str) -> None:
        self.failures += 1
        self.last_reason = reason
        if self.state == "half-open" or self.failures >= self.threshold:
            now = self.clock()
            if self.state != "open":
                self.opened += 1
                log.warning("%s: circuit open for %.1f s (%s)", self.name, self.cooldown, reason)
            if self.outage_since is None:
                self.outage_since = now
            self.state = "open"
            self.open_until = now + self.cooldown
            self.cooldown = min(self.cooldown * 2, self.base_cooldown * 16)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass
class ProviderStats:
    requests: int = 0
    retries: int = 0
    bytes: int = 0
    throttled: int = 0

    def to_dict(self) -> dict[str, int]:
        return dict(vars(self))


class Provider:
    """One remote service with its own limits; use :meth:`request` for every call."""

    def __init__(
        self,
        name: str,
        http: HttpConfig,
        *,
        max_concurrency: int,
        rate_per_s: float,
        redactor: Redactor,
        headers: dict[str, str] | None = None,
        timeout_s: float | None = None,
        refusal: Refusal = refused_by_status,
    ) -> None:
        self.name = name
        self.refusal = refusal
        self.http = http
        self.redact = redactor
        self.semaphore = asyncio.Semaphore(max_concurrency)
        self.bucket = TokenBucket(rate_per_s, burst=max(1.0, min(rate_per_s, max_concurrency)))
        self.breaker = CircuitBreaker(
            name, http.breaker_threshold, http.breaker_cooldown_s, http.max_outage_s
        )
        self.paused_until = 0.0
        self.stats = ProviderStats()
        self.client = httpx.AsyncClient(
            headers={"User-Agent": http.user_agent, **(headers or {})},
            timeout=httpx.Timeout(timeout_s or http.timeout_s),
            limits=httpx.Limits(max_connections=max_concurrency),
            follow_redirects=True,
        )
        self.rng = random.Random()

    async def close(self) -> None:
        await self.client.aclose()

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.http.backoff_max_s, self.http.backoff_base_s * 2**attempt)
        return ceiling / 2 + self.rng.uniform(0, ceiling / 2)

    async def request(
        self,
        method: str,
        url: str,
        check: Callable[[httpx.Response], T],
        *,
        headers: dict[str, str] | None = None,
        params: dict[str, Any] | None = None,
        json: Any = None,
        credentials: bool = True,
    ) -> T:
        """Send until ``check`` accepts a response, or raise :class:`FetchFailed`.

        ``check`` raises :class:`BadResponse` for an unusable payload (retried). A response
        the provider's ``refusal`` check flags stops the stage (:class:`ProviderUnavailable`)
        only when the request carried the provider's credentials: a pre-signed URL on a
        caching host (``credentials=False``) that answers 403 has expired, which says nothing
        about the key, so it fails like any other definitive 4xx.
        """
        attempts: list[str] = []
        shown = self.redact(url)
        counted = 0  # attempts this request used up (a provider outage uses none)
        attempt = -1
        while counted < self.http.attempts:
            attempt += 1
            await self.breaker.wait()
            pause = self.paused_until - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
            await self.bucket.acquire()
            retry_after = None
            async with self.semaphore:
                self.stats.requests += 1
                if attempt:
                    self.stats.retries += 1
                try:
                    response = await self.client.request(
                        method, url, headers=headers, params=params, json=json
                    )
                    body_size = len(response.content)
                except httpx.TimeoutException:
                    reason = "timeout"
                    self.breaker.failure(reason)
                    response = None
                except httpx.TransportError as err:
                    reason = f"connection error ({type(err).__name__})"
                    self.breaker.failure(reason)
                    response = None
            if response is not None:
                self.stats.bytes += body_size
                status = response.status_code
                refused = self.refusal(response) if credentials else None
                if refused:
                    raise ProviderUnavailable(
                        self.redact(
                            f"{self.name}: {refused} for {shown}: the key or token was refused"
                        )
                    )
                if status == 429:
                    self.stats.throttled += 1
                    self.breaker.success()
                    retry_after = parse_retry_after(response.headers.get("Retry-After"))
                    reason = "HTTP 429 (rate limited)"
                    if retry_after is not None:
                        if retry_after > self.http.max_outage_s:
                            raise ProviderUnavailable(
                                f"{self.name}: asked to wait {retry_after:.0f} s (Retry-After)"
                            )
                        self.paused_until = max(self.paused_until, time.monotonic() + retry_after)
                elif status >= 500 or status == 408:
                    reason = f"HTTP {status}"
                    self.breaker.failure(reason)
                elif status >= 400:
                    self.breaker.success()
                    reason = f"HTTP {status} for {shown}"
                    attempts.append(reason)
                    raise FetchFailed(reason, attempts, status, response.content[:ERROR_BODY_BYTES])
                elif body_size > self.http.max_bytes:
                    self.breaker.success()
                    reason = f"response of {body_size} bytes exceeds http.max_bytes"
                    attempts.append(reason)
                    raise FetchFailed(reason, attempts)
                else:
                    self.breaker.success()
                    try:
                        # Checks decode images: off the event loop, so I/O keeps flowing.
                        return await asyncio.to_thread(check, response)
                    except BadResponse as err:
                        reason = f"bad response: {self.redact(str(err))}"
            attempts.append(reason)
            log.info("%s: %s on %s (attempt %d)", self.name, reason, shown, attempt + 1)
            # A failure that opened the breaker, or came while it was open, is the provider's
            # outage rather than this request's: it uses up none of the request's attempts
            # (which would quarantine a good sample), and the breaker decides when the outage
            # has lasted too long (ProviderUnavailable).
            if self.breaker.state == "closed":
                counted += 1
            # After a Retry-After the provider-wide pause does the waiting.
            if counted < self.http.attempts and retry_after is None:
                await asyncio.sleep(self._backoff(min(attempt, counted)))
        raise FetchFailed(f"{attempts[-1]} after {len(attempts)} attempts", attempts)


def require_json(response: httpx.Response) -> Any:
    """Accept a JSON body; a malformed one is a bad response (retried)."""
    try:
        return response.json()
    except ValueError as err:
        raise BadResponse(f"malformed JSON ({err})") from None
