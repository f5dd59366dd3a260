"""Stage 4: an LVLM writes the first-person scene description of each street photo.

Any OpenAI-compatible ``/chat/completions`` endpoint works (vLLM, SGLang, Ollama, hosted
APIs); the photo goes inline as a base64 data URL. Answers are validated (length bounds,
refusals, truncation, first person, place names) and asked again when they fail; accepted
answers are cached by image hash, prompt and model, so a rerun never pays twice.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from planetloc.atomic import write_text
from planetloc.builder.config import DescribeConfig, HttpConfig, secret_from_env
from planetloc.builder.fetch import BadResponse, FetchFailed, Provider, Redactor, require_json
from planetloc.builder.imagery import decode_image, encode_jpeg, shrink
from planetloc.builder.prompt import load_prompt
from planetloc.errors import PlanetlocError
from planetloc.geo.regions import Region, load_catalog

_REFUSAL = re.compile(
    r"\b(I'?m sorry|I am sorry|I cannot|I can'?t (help|assist|describe)|as an AI|"
    r"I am unable|I'?m unable|unable to (help|assist|describe))\b",
    re.IGNORECASE,
)
_FIRST_PERSON = re.compile(r"\b(I|I'm|I am|my|me)\b")


def place_names(region: Region, extra: list[str]) -> list[str]:
    """Names an answer must not contain: every catalog city and country, plus extra terms."""
    names = {region.name, region.country, *extra}
    for other in load_catalog():
        names.update((other.name, other.country))
    return sorted(n for n in names if len(n) >= 4)


def check_description(
    text: str, cfg: DescribeConfig, banned: list[str], finish_reason: str | None
) -> str | None:
    """What is wrong with an answer, or ``None`` when it can enter the dataset."""
    if finish_reason == "length":
        return "answer cut off at max_tokens"
    if _REFUSAL.search(text):
        return "refusal"
    words = len(text.split())
    if words < cfg.min_words:
        return f"too short ({words} words < {cfg.min_words})"
    if words > cfg.max_words:
        return f"too long ({words} words > {cfg.max_words})"
    if cfg.require_first_person and not _FIRST_PERSON.search(text):
        return "not in the first person"
    lowered = text.lower()
    for name in banned:
        if re.search(rf"(?<!\w){re.escape(name.lower())}(?!\w)", lowered):
            return f"names a place ({name!r})"
    return None


_OTHER_TOKEN_FIELD = {
    "max_tokens": "max_completion_tokens",
    "max_completion_tokens": "max_tokens",
}


def rejects_parameter(body: bytes, name: str) -> bool:
    """Whether an OpenAI-style error body says the request parameter ``name`` is not
    supported (``{"error": {"param": name, "code": "unsupported_parameter"}}`` or a message
    saying so); a value out of range for it is another matter."""
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        return False
    if not isinstance(error, dict):
        return False
    message = str(error.get("message", "")).lower()
    named = error.get("param") == name or name in message
    unsupported = error.get("code") == "unsupported_parameter" or any(
        phrase in message for phrase in ("not supported", "unsupported")
    )
    return named and unsupported


def _parse_completion(response: Any) -> tuple[str, str | None, dict[str, int]]:
    payload = require_json(response)
    try:
        choice = payload["choices"][0]
        content = choice["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise BadResponse("no choices[0].message.content in the completion") from None
    if isinstance(content, list):
        content = " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    if not isinstance(content, str):
        raise BadResponse("message content is not text")
    usage = payload.get("usage") or {}
    tokens = {
        "prompt_tokens": int(usage.get("prompt_tokens") or 0),
        "completion_tokens": int(usage.get("completion_tokens") or 0),
    }
    return " ".join(content.split()), choice.get("finish_reason"), tokens


@dataclass
class DescribeTotals:
    requests: int = 0
    cached: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "cached": self.cached,
            "rejected": dict(sorted(self.rejected.items())),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }


class Describer:
    """Client for one OpenAI-compatible endpoint with validation, retries and a cache."""

    def __init__(
        self, cfg: DescribeConfig, http: HttpConfig, redactor: Redactor, cache_dir: Path
    ) -> None:
        self.cfg = cfg
        self.prompt = load_prompt(cfg)
        key = secret_from_env(cfg.api_key_env, "describe.api_key_env")
        redactor.add(key)
        self.provider = Provider(
            "describe",
            http,
            max_concurrency=cfg.max_concurrency,
            rate_per_s=cfg.rate_per_s,
            redactor=redactor,
            headers={"Authorization": f"Bearer {key}"} if key else None,
            timeout_s=cfg.timeout_s,
        )
        self.url = cfg.base_url.rstrip("/") + "/chat/completions"
        self.cache_dir = cache_dir
        self.totals = DescribeTotals()

    def cache_key(self, image: bytes) -> str:
        c = self.cfg
        parts = [
            hashlib.sha256(image).hexdigest(),
            self.prompt.digest,
            c.model,
            str(c.max_tokens),
            str(c.temperature),
            str(c.image_max_side),
        ]
        return hashlib.sha256("\x00".join(parts).encode()).hexdigest()

    def _cache_path(self, key: str) -> Path:
        return self.cache_dir / key[:2] / f"{key}.json"

    def _payload(self, image: bytes, attempt: int) -> dict[str, Any]:
        decoded = decode_image(image)
        if decoded.format == "JPEG" and max(decoded.size) <= self.cfg.image_max_side:
            small = image  # already small enough: no second compression
        else:
            small = encode_jpeg(shrink(decoded, self.cfg.image_max_side), 90)
        data_url = "data:image/jpeg;base64," + base64.b64encode(small).decode("ascii")
        messages: list[dict[str, Any]] = []
        if self.prompt.system:
            messages.append({"role": "system", "content": self.prompt.system})
        messages.append(
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": self.prompt.user},
                    {"type": "image_url", "image_url": {"url": data_url}},
                ],
            }
        )
        return {
            "model": self.cfg.model,
            "messages": messages,
            self.cfg.max_tokens_field: self.cfg.max_tokens,
            # A rejected answer is asked again a little warmer so it can come out different.
            "temperature": round(self.cfg.temperature + 0.2 * attempt, 3),
            "seed": attempt,
        }

    async def describe(self, image: bytes, banned: list[str]) -> dict[str, Any]:
        """The accepted description with its usage, or :class:`FetchFailed` with reasons."""
        key = self.cache_key(image)
        cached = self._cache_path(key)
        if cached.is_file():
            self.totals.cached += 1
            return json.loads(cached.read_text("utf-8"))
        reasons: list[str] = []
        for attempt in range(self.cfg.attempts):
            payload = await asyncio.to_thread(self._payload, image, attempt)
            try:
                text, finish, tokens = await self.provider.request(
                    "POST", self.url, _parse_completion, json=payload
                )
            except FetchFailed as err:
                if err.status == 400 and rejects_parameter(err.body, self.cfg.max_tokens_field):
                    # Every request would fail the same way: a setting to change, not a sample.
                    other = _OTHER_TOKEN_FIELD[self.cfg.max_tokens_field]
                    raise PlanetlocError(
                        f"describe: {self.url} does not accept {self.cfg.max_tokens_field!r} "
                        f"(HTTP 400); set describe.max_tokens_field: {other}"
                    ) from None
                raise
            self.totals.requests += 1  # answers received: what the tokens were spent on
            self.totals.prompt_tokens += tokens["prompt_tokens"]
            self.totals.completion_tokens += tokens["completion_tokens"]
            problem = check_description(text, self.cfg, banned, finish)
            if problem is None:
                result = {"text": text, "model": self.cfg.model, "attempts": attempt + 1, **tokens}
                write_text(cached, json.dumps(result, sort_keys=True))
                return result
            kind = problem.split(" (")[0]
            self.totals.rejected[kind] = self.totals.rejected.get(kind, 0) + 1
            reasons.append(f"rejected answer: {problem}")
        raise FetchFailed(f"no acceptable description after {len(reasons)} answers", reasons)

    async def close(self) -> None:
        await self.provider.close()
