"""Cost in USD of one LLM call, from `genai-prices`, cheap enough for every call.

`genai_prices.calc_price` matches the model id against its whole catalogue on each
call (tens of microseconds, plus ~0.2 s to load the catalogue the first time), which
would cost more than the span it decorates. So each `(provider, model)` is resolved
once: for the usual flat per-token prices, the four per-token rates are read off
`genai-prices` by probing it with unit usages, and a call's cost is four multiplications
(the same figure `calc_price` gives, see tests/instrumentation/test_pricing.py). Models
with tiered prices keep `genai-prices`' exact calculation. Prices are resolved at first
use and kept until genai-prices' price data changes: its `UpdatePrices` replaces the data
in the background (the way a process learns a model released after its genai-prices
version, or a new price), and every model is then resolved again from the new data.

A call served at another price than the standard one names its `price_variant`, a key
and value of genai-prices' price context: OpenAI's `("service_tier", "flex")` (half
price) or `"priority"`, Anthropic's `("speed", "fast")`. Each variant of a model is
resolved once, like the model itself. Anthropic bills a call it ran in the US only
(`inference_geo` "us", on the models that take the parameter) at 1.1x every token price,
which genai-prices does not know: `cost_usd` applies it (`US_ONLY_INFERENCE`).

`provider` is the span's `gen_ai.provider.name`; where `genai-prices` files that
provider's prices under another id (Azure OpenAI under `azure`, Bedrock under `aws`),
the id is translated when the model is first resolved.

Token counts follow `genai-prices`' convention: `input_tokens` includes the cached
ones (`cache_read_tokens`, `cache_write_tokens`), as OpenAI reports them. An unknown
model has no cost: `cost_usd` returns None and logs one warning per model id.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from genai_prices.types import ModelPrice

_log = logging.getLogger(__name__)

# (input, output, cache_read, cache_write, cache_write_1h) tokens, web searches -> USD
Pricer = Callable[[int, int, int, int, int, int], float]

#: `gen_ai.provider.name` -> genai-prices' provider id, where the two differ.
PRICES_PROVIDER = {
    "azure.ai.openai": "azure",
    "aws.bedrock": "aws",
    "gcp.vertex_ai": "google",
    "gcp.gemini": "google",
    "gcp.gen_ai": "google",
    "x_ai": "x-ai",
    "mistral_ai": "mistral",
}

_PROBE = 1000  # tokens: small enough to stay below any price tier
#: Anthropic's price for a call run in the US only (`inference_geo` "us"), against the
#: standard ("global") one.
US_ONLY_INFERENCE = 1.1
#: genai-prices' price context of a call served at a price other than the standard one.
PriceVariant = tuple[str, str]
_pricers: dict[tuple[str, str, PriceVariant | None], Pricer | None] = {}
_lock = threading.Lock()
#: genai-prices' `get_snapshot`, once the first model is resolved (importing genai-prices
#: takes 0.3 s), and the price data `_pricers` were resolved from.
_current_data: Callable[[], object] | None = None
_resolved_from: object = None
#: The models warned about as unknown: once each, whatever data comes later.
_warned: set[tuple[str, str]] = set()


def _forked() -> None:
    """In a forked child: a new lock, since a thread the child lacks may have held the
    parent's (the child's first call to a new model would wait for it forever)."""
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_forked)


def cost_usd(
    provider: str,
    model: str,
    input_tokens: int,
    output_tokens: int,
    cache_read_tokens: int = 0,
    cache_write_tokens: int = 0,
    cache_write_1h_tokens: int = 0,
    web_searches: int = 0,
    price_variant: PriceVariant | None = None,
    *,
    inference_geo: str | None = None,
) -> float | None:
    """The price of one call in USD, or None when `genai-prices` does not know `model`.

    `cache_write_1h_tokens` are the part of `cache_write_tokens` kept an hour (Anthropic
    prices them above the five-minute writes); `web_searches` are the calls of the
    provider's web search tool, billed apiece; `inference_geo` is where Anthropic ran
    the call."""
    if _current_data is not None and _current_data() is not _resolved_from:
        _pricers.clear()  # new price data: each model is resolved again at its next call
    try:
        pricer = _pricers[(provider, model, price_variant)]
    except KeyError:
        pricer = _resolve(provider, model, price_variant)
    if pricer is None:
        return None
    cost = pricer(
        input_tokens,
        output_tokens,
        cache_read_tokens,
        cache_write_tokens,
        cache_write_1h_tokens,
        web_searches,
    )
    return cost * US_ONLY_INFERENCE if inference_geo == "us" else cost


def has_price(provider: str, model: str) -> bool:
    """Whether genai-prices prices `model` at all (`validate` asks before a rollout);
    logs and keeps nothing."""
    try:
        _exact_model_price(provider, model, None)
    except LookupError:
        return False
    return True


def warm() -> None:
    """Load the `genai-prices` catalogue now (in a daemon thread), not during the first call."""
    threading.Thread(target=_load_catalogue, name="canarytrace-prices", daemon=True).start()


def _load_catalogue() -> None:
    try:
        _exact_model_price("openai", "gpt-4o", None)
    except Exception:  # a broken catalogue shows up, once per model, at first use
        _log.debug("could not preload the genai-prices catalogue", exc_info=True)


def _resolve(provider: str, model: str, variant: PriceVariant | None) -> Pricer | None:
    global _current_data, _resolved_from
    from genai_prices.data_snapshot import get_snapshot

    key = (provider, model, variant)
    with _lock:
        data = get_snapshot()
        if data is not _resolved_from:
            _pricers.clear()
            _current_data, _resolved_from = get_snapshot, data
        if key in _pricers:
            return _pricers[key]
        try:
            pricer: Pricer | None = _build_pricer(provider, model, variant)
        except LookupError:
            if (provider, model) not in _warned:
                _warned.add((provider, model))
                _log.warning(
                    "canarytrace: genai-prices has no price for %s model %r; its calls get "
                    "no cost attribute (upgrade genai-prices if the model is new, or run "
                    "its UpdatePrices)",
                    provider,
                    model,
                )
            pricer = None
        except Exception:
            _log.warning("canarytrace: pricing %s model %r failed", provider, model, exc_info=True)
            pricer = None
        _pricers[key] = pricer
        return pricer


def _exact_model_price(provider: str, model: str, variant: PriceVariant | None) -> ModelPrice:
    from genai_prices import Usage, calc_price

    provider_id = PRICES_PROVIDER.get(provider, provider)
    context = dict([variant]) if variant is not None else None
    usage = Usage(input_tokens=1)
    return calc_price(usage, model, provider_id=provider_id, price_context=context).model_price


def _build_pricer(provider: str, model: str, variant: PriceVariant | None) -> Pricer:
    from genai_prices.types import TieredPrices

    model_price = _exact_model_price(provider, model, variant)
    if any(isinstance(value, TieredPrices) for value in vars(model_price).values()):
        return _exact_pricer(model_price)

    def probe(**tokens: int) -> float:
        from genai_prices import Usage

        return float(model_price.calc_price(Usage(**tokens))["total_price"]) / _PROBE

    per_input = probe(input_tokens=_PROBE)
    per_output = probe(output_tokens=_PROBE)
    # Cached tokens are part of input_tokens, so their rate is the difference they make.
    per_read = probe(input_tokens=_PROBE, cache_read_tokens=_PROBE) - per_input
    per_write = probe(input_tokens=_PROBE, cache_write_tokens=_PROBE) - per_input
    # Hour-long writes are part of the writes: their rate is what they add to a write's.
    per_hour = (
        probe(input_tokens=_PROBE, cache_write_tokens=_PROBE, cache_write_1h_tokens=_PROBE)
        - per_input
        - per_write
    )
    per_search = probe(web_searches=_PROBE)

    def flat(inp: int, out: int, read: int, write: int, hour: int, searches: int) -> float:
        return (
            inp * per_input
            + out * per_output
            + read * per_read
            + write * per_write
            + hour * per_hour
            + searches * per_search
        )

    return flat


def _exact_pricer(model_price: ModelPrice) -> Pricer:
    from genai_prices import Usage

    def exact(inp: int, out: int, read: int, write: int, hour: int, searches: int) -> float:
        usage = Usage(
            input_tokens=inp,
            output_tokens=out,
            cache_read_tokens=read,
            cache_write_tokens=write,
            cache_write_1h_tokens=hour,
            web_searches=searches,
        )
        total: Decimal = model_price.calc_price(usage)["total_price"]
        return float(total)

    return exact
