"""Which provider a client's calls go to: the span's `gen_ai.provider.name`.

The openai and anthropic SDKs reach more than their makers' APIs: Azure OpenAI, Amazon
Bedrock and Google Vertex AI resell the same models, and OpenAI's API is spoken by
other services reached through `base_url` (DeepSeek, Groq, xAI, ...). A span that
said `openai` for an Azure deployment would put its calls on the wrong dashboard, and
a Bedrock model id priced from Anthropic's own catalogue has no price at all.

The provider is worked out once per client (the wrappers cache it with the client's
`Target`), from what the client itself says first, then from its host. Values are the
OpenTelemetry GenAI conventions' well-known names; `gen_ai.system` gets the same. A host
the rules below do not know is looked up in genai-prices, which knows where each API it
prices lives: a provider the conventions name gets that name, others (OpenRouter,
Together, Fireworks, ...) genai-prices' id, so their calls are priced from its catalogue.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from canarytrace.pricing import PRICES_PROVIDER

#: genai-prices' provider id -> the conventions' name, for a host only genai-prices
#: knows (an Azure API gateway, a Google endpoint that is neither Vertex's nor Gemini's).
_CONVENTIONS_NAME = {prices_id: name for name, prices_id in PRICES_PROVIDER.items()}
_CONVENTIONS_NAME["google"] = "gcp.gen_ai"  # any Google generative AI endpoint

#: What the SDK's platform clients say (openai: the `provider=` factory's name).
_OPENAI_PLATFORMS = {"bedrock": "aws.bedrock", "vertex": "gcp.vertex_ai"}

#: Host pattern -> provider, for clients pointed at a service by `base_url`.
_HOSTS = tuple(
    (re.compile(pattern), name)
    for pattern, name in (
        (r"(^|\.)(openai\.azure|cognitiveservices\.azure)\.com$", "azure.ai.openai"),
        (
            r"^bedrock-(runtime|mantle)(-fips)?\.[a-z0-9-]+\.(amazonaws\.com|api\.aws)$",
            "aws.bedrock",
        ),
        # global, regional (us-east5-aiplatform) and multi-region (aiplatform.us.rep) hosts
        (r"(^|[.-])aiplatform(\.[a-z0-9-]+\.rep)?\.googleapis\.com$", "gcp.vertex_ai"),
        (r"^generativelanguage\.googleapis\.com$", "gcp.gemini"),
        (r"^api\.deepseek\.com$", "deepseek"),
        (r"^api\.groq\.com$", "groq"),
        (r"^api\.x\.ai$", "x_ai"),
        (r"^api\.mistral\.ai$", "mistral_ai"),
        (r"^api\.perplexity\.ai$", "perplexity"),
    )
)


def provider_name(sdk: str, client: Any, host: str | None) -> str:
    """The provider behind `client` (an openai or anthropic SDK client) reached at `host`;
    `sdk` ("openai" or "anthropic") when nothing says otherwise."""
    declared = _declared(sdk, client)
    if declared is not None:
        return declared
    return _by_host(host) or sdk


def _declared(sdk: str, client: Any) -> str | None:
    if sdk == "anthropic":
        # Every anthropic 2.x client class names its provider for the SDK's own spans
        # (`aws.bedrock`, `gcp.vertex_ai`, else `anthropic`): the span canarytrace
        # replaces would have said the same.
        name = getattr(client, "_gen_ai_provider_name", None)
        return name if isinstance(name, str) and name else None
    # OpenAI(provider=bedrock(...) or vertex(...)), and BedrockOpenAI, which makes one
    runtime = getattr(client, "_provider_runtime", None)
    platform = _OPENAI_PLATFORMS.get(getattr(runtime, "name", None) or "")
    if platform is not None:
        return platform
    if any(cls.__name__ == "BaseAzureClient" for cls in type(client).__mro__):
        return "azure.ai.openai"  # AzureOpenAI, whose endpoint may be a custom domain
    return None


@lru_cache(maxsize=256)
def _by_host(host: str | None) -> str | None:
    if not host:
        return None
    host = host.lower()
    for pattern, name in _HOSTS:
        if pattern.search(host):
            return name
    return _genai_prices_provider(host)


def _genai_prices_provider(host: str) -> str | None:
    """The provider whose API genai-prices knows at `host`, if any: the conventions' name
    where there is one, else genai-prices' id.

    Its patterns are not anchored at the host's end, so the match must cover the whole
    host: `openai.azure.com.example.org` is not Azure.
    """
    from genai_prices.data_snapshot import get_snapshot

    origin = f"https://{host}"
    try:
        provider = get_snapshot().find_provider(None, None, origin + "/")
    except Exception:  # unknown host (LookupError), or a catalogue that cannot load:
        return None  # a label is not worth the call's span
    match = re.search(provider.api_pattern or "", origin + "/")
    if match is None or match.end() < len(origin):
        return None
    return _CONVENTIONS_NAME.get(provider.id, provider.id)


_ID_PARTS = re.compile(r"[-.@:/_]")


@lru_cache(maxsize=1024)
def same_model(requested: str, served: str) -> bool:
    """Whether the response's model id `served` names the model a pinned request for
    `requested` implies, spelled as a platform spells it.

    Platforms wrap a model's own id: Bedrock asks for `us.anthropic.claude-3-5-sonnet-
    20241022-v2:0` and answers `claude-3-5-sonnet-20241022`; Vertex writes the date after
    `@`. So the served id is the requested one when its parts (split at `-`, `.`, `@`,
    `:`, `/`, `_`) appear in the requested id's parts in the same order; another snapshot
    date, or another model, does not.
    """
    wanted = iter(_ID_PARTS.split(requested.lower()))
    return all(part in wanted for part in _ID_PARTS.split(served.lower()))
