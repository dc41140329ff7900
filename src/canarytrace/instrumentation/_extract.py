"""Pure extraction: SDK request arguments and responses -> span attributes and usage.

No wrapt, no OpenTelemetry here, so each function is tested on plain SDK objects. A
request dict never holds unset values: the SDKs' `NotGiven`/`Omit` sentinels and None
are skipped by accepting only values of the attribute's type. Usage is returned as
`Usage(input, output, cache_read, cache_write)` with `input` counting every input token,
cached ones included (OpenAI's convention, and genai-prices'); Anthropic reports cached
tokens apart, so they are added to its `input_tokens`. A count that is not an int (None,
or whatever an OpenAI-compatible server sent, which the SDKs pass on unvalidated) reads
0, so the response's other attributes and its cost are still recorded.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, NamedTuple

from canarytrace import attributes as A


class Usage(NamedTuple):
    """What one call is billed for: tokens (`input` includes `cache_read` and
    `cache_write`, which includes `cache_write_1h`, the writes kept an hour, Anthropic's
    at a higher price) and the web searches its server-side tool made, billed apiece.
    `price_variant` names a price other than the standard one (`pricing.PriceVariant`).
    `compaction` counts what the call's server-side context compactions read and wrote,
    which Anthropic bills at the same model's price but leaves out of the counts above.
    `inference_geo` is where Anthropic ran the call, which can raise its price."""

    input: int
    output: int
    cache_read: int = 0
    cache_write: int = 0
    cache_write_1h: int = 0
    web_searches: int = 0
    price_variant: tuple[str, str] | None = None
    compaction: Usage | None = None
    inference_geo: str | None = None


#: `_new_usage((input, output, cache_read, cache_write, cache_write_1h, web_searches,
#: price_variant, compaction, inference_geo))`: a `Usage` without the NamedTuple's own
#: constructor, which is Python code (0.2 µs) on every call's path; so every field is given.
_new_usage = partial(tuple.__new__, Usage)


def _int(value: object) -> int:
    return value if isinstance(value, int) else 0


def server_attributes(base_url: Any) -> dict[str, Any]:
    """`server.address` and `server.port` of a client's `base_url` (an httpx2/httpx URL)."""
    host = getattr(base_url, "host", None)
    if not host:
        return {}
    port = getattr(base_url, "port", None)
    if port is None:
        port = 443 if getattr(base_url, "scheme", "https") == "https" else 80
    return {A.SERVER_ADDRESS: host, A.SERVER_PORT: port}


# --- requests ------------------------------------------------------------------------

# A tuple, not `int | float`: that expression builds a new union object on every call.
_NUMBERS = (int, float)


def _number(value: Any) -> Any:
    return value if isinstance(value, _NUMBERS) and not isinstance(value, bool) else None


def _count(value: Any) -> Any:
    """A choice count worth recording: the conventions leave out the default, 1."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value != 1 else None


def _text(value: Any) -> Any:
    return value if isinstance(value, str) and value else None


def _on(value: Any) -> Any:
    """A switch worth recording: on (off is the default, and says nothing)."""
    return True if value is True else None


def _texts(value: Any) -> Any:
    """A string or a list of strings (OpenAI's `stop` takes both) as a list."""
    if isinstance(value, str):
        return [value] if value else None
    if isinstance(value, list | tuple) and value and all(isinstance(v, str) for v in value):
        return list(value)
    return None


def _comma_texts(value: Any) -> Any:
    """A header's comma-separated list (`anthropic-beta: a,b`) as a list."""
    if not isinstance(value, str):
        return None
    items = [item.strip() for item in value.split(",") if item.strip()]
    return items or None


_FORMAT_OUTPUT = {"json_object": "json", "json_schema": "json", "text": "text"}


def _output_type(value: Any) -> Any:
    """The conventions' output type of a requested format: `json` for a JSON mode or
    schema, or for the class that the SDKs' `parse` methods take; `text` for text."""
    if isinstance(value, type):
        return "json"
    kind = value.get("type") if isinstance(value, dict) else None
    return _FORMAT_OUTPUT.get(kind) if isinstance(kind, str) else None


#: What one request argument records: (attribute, the field it is read from when the
#: argument is a dict, such as `thinking`'s `type`, else None, and the reader that gives
#: the value to record or None). The readers accept only values of the attribute's type,
#: which also skips the SDKs' `NotGiven`/`Omit` sentinels.
Setting = tuple[str, str | None, Callable[[Any], Any]]


def _plain(attribute: str, read: Callable[[Any], Any] = _number) -> tuple[Setting, ...]:
    return ((attribute, None, read),)


# kwarg -> its settings. OpenAI refuses a chat request that sets both `max_tokens` and
# `max_completion_tokens` (400, invalid_parameter_combination).
_OPENAI_CHAT_PARAMS = {
    "temperature": _plain(A.GEN_AI_REQUEST_TEMPERATURE),
    "top_p": _plain(A.GEN_AI_REQUEST_TOP_P),
    "seed": _plain(A.GEN_AI_REQUEST_SEED),
    "max_tokens": _plain(A.GEN_AI_REQUEST_MAX_TOKENS),
    "max_completion_tokens": _plain(A.GEN_AI_REQUEST_MAX_TOKENS),
    "frequency_penalty": _plain(A.GEN_AI_REQUEST_FREQUENCY_PENALTY),
    "presence_penalty": _plain(A.GEN_AI_REQUEST_PRESENCE_PENALTY),
    "n": _plain(A.GEN_AI_REQUEST_CHOICE_COUNT, _count),
    "stop": _plain(A.GEN_AI_REQUEST_STOP_SEQUENCES, _texts),
    "reasoning_effort": _plain(A.GEN_AI_REQUEST_REASONING_LEVEL, _text),
    "service_tier": _plain(A.OPENAI_REQUEST_SERVICE_TIER, _text),
    "response_format": _plain(A.GEN_AI_OUTPUT_TYPE, _output_type),
}
_OPENAI_RESPONSES_PARAMS = {
    "temperature": _plain(A.GEN_AI_REQUEST_TEMPERATURE),
    "top_p": _plain(A.GEN_AI_REQUEST_TOP_P),
    "max_output_tokens": _plain(A.GEN_AI_REQUEST_MAX_TOKENS),
    "reasoning": ((A.GEN_AI_REQUEST_REASONING_LEVEL, "effort", _text),),
    "service_tier": _plain(A.OPENAI_REQUEST_SERVICE_TIER, _text),
    "text": ((A.GEN_AI_OUTPUT_TYPE, "format", _output_type),),
    "text_format": _plain(A.GEN_AI_OUTPUT_TYPE, _output_type),
    "background": _plain(A.BACKGROUND, _on),
}
_OPENAI_EMBEDDINGS_PARAMS = {
    "dimensions": _plain(A.GEN_AI_EMBEDDINGS_DIMENSION_COUNT),
    "encoding_format": _plain(A.GEN_AI_REQUEST_ENCODING_FORMATS, _texts),
}
# anthropic 2.x takes no temperature, top_p or top_k; `betas` is `beta.messages`' own.
_ANTHROPIC_PARAMS = {
    "max_tokens": _plain(A.GEN_AI_REQUEST_MAX_TOKENS),
    "stop_sequences": _plain(A.GEN_AI_REQUEST_STOP_SEQUENCES, _texts),
    "output_config": (
        (A.GEN_AI_REQUEST_REASONING_LEVEL, "effort", _text),
        (A.GEN_AI_OUTPUT_TYPE, "format", _output_type),
    ),
    "output_format": _plain(A.GEN_AI_OUTPUT_TYPE, _output_type),
    "thinking": (
        (A.ANTHROPIC_THINKING_TYPE, "type", _text),
        (A.ANTHROPIC_THINKING_BUDGET_TOKENS, "budget_tokens", _number),
    ),
    "service_tier": _plain(A.ANTHROPIC_REQUEST_SERVICE_TIER, _text),
    "betas": _plain(A.ANTHROPIC_BETA, _texts),
}
PARAMS: dict[str, dict[str, tuple[Setting, ...]]] = {
    "openai.chat": _OPENAI_CHAT_PARAMS,
    "openai.responses": _OPENAI_RESPONSES_PARAMS,
    "openai.embeddings": _OPENAI_EMBEDDINGS_PARAMS,
    "anthropic.messages": _ANTHROPIC_PARAMS,
}

#: A request header recorded as a setting: (attribute, reader), by lowercase name.
HeaderSetting = tuple[str, Callable[[Any], Any]]

#: The headers that say how a request is served, as anthropic's own span records them:
#: the betas a call uses, whether set by `betas=`, a call's `extra_headers` or a client's
#: `default_headers`.
ANTHROPIC_HEADERS: dict[str, HeaderSetting] = {"anthropic-beta": (A.ANTHROPIC_BETA, _comma_texts)}


def request_attributes(
    kwargs: Mapping[str, Any], params: Mapping[str, tuple[Setting, ...]], into: dict[str, Any]
) -> None:
    """Copy the request settings that `kwargs` sets into `into`."""
    # One set operation finds the passed ones: most parameters are not passed.
    for name in params.keys() & kwargs.keys():
        argument = kwargs[name]
        for attribute, field, read in params[name]:
            value = argument
            if field is not None:
                value = argument.get(field) if isinstance(argument, dict) else None
            value = read(value)
            if value is not None:
                into[attribute] = value
    if kwargs.get("stream") is True:
        into[A.GEN_AI_REQUEST_STREAM] = True


def header_attributes(
    headers: Any, settings: Mapping[str, HeaderSetting], into: dict[str, Any]
) -> None:
    """Copy the settings that request `headers` set into `into`, over what it holds, as
    the SDKs send a call's `extra_headers` over the headers of its arguments (`betas=`)
    and those over the client's `default_headers`. A header set to anything but text
    (the SDKs' `Omit`) is not sent: the setting it named is taken out."""
    if not isinstance(headers, Mapping):
        return
    for name, value in headers.items():
        setting = settings.get(name.lower()) if isinstance(name, str) else None
        if setting is not None:
            attribute, read = setting
            recorded = read(value)
            if recorded is None:
                into.pop(attribute, None)
            else:
                into[attribute] = recorded


#: The request parameters that can name the end user.
_USER_KEYS = frozenset({"safety_identifier", "user", "metadata"})


def request_user_id(kwargs: Mapping[str, Any]) -> str | None:
    """The end-user id the request names (OpenAI `user`/`safety_identifier`, Anthropic
    `metadata.user_id`), to be recorded only as a keyed hash."""
    if _USER_KEYS.isdisjoint(kwargs):  # the usual case, decided without a call per key
        return None
    for key in ("safety_identifier", "user"):
        value = kwargs.get(key)
        if isinstance(value, str) and value:
            return value
    metadata = kwargs.get("metadata")
    if isinstance(metadata, Mapping):
        value = metadata.get("user_id")
        if isinstance(value, str) and value:
            return value
    return None


def input_messages(kwargs: Mapping[str, Any]) -> str | None:
    """The prompt as the JSON of `gen_ai.input.messages` (only with content capture on)."""
    messages: list[dict[str, Any]] = []
    system = kwargs.get("system") or kwargs.get("instructions")
    if isinstance(system, str | list):
        messages.append({"role": "system", "parts": _parts(system)})
    prompt = kwargs.get("messages")
    if prompt is None:
        prompt = kwargs.get("input")
    if isinstance(prompt, str):
        messages.append({"role": "user", "parts": _parts(prompt)})
    elif isinstance(prompt, list | tuple):
        for message in prompt:
            if isinstance(message, Mapping):
                parts = _parts(message.get("content"))
                messages.append({"role": message.get("role", "user"), "parts": parts})
            else:
                messages.append({"role": "user", "parts": _parts(message)})
    return json.dumps(messages, default=str, ensure_ascii=False) if messages else None


def _parts(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    if isinstance(content, list | tuple):
        parts = []
        for block in content:
            text = block.get("text") if isinstance(block, Mapping) else getattr(block, "text", None)
            if isinstance(text, str):
                parts.append({"type": "text", "content": text})
            elif isinstance(block, str):
                parts.append({"type": "text", "content": block})
        return parts
    return [{"type": "text", "content": str(content)}]


def add_output_messages(attributes: dict[str, Any], texts: list[str]) -> None:
    """The completion as the JSON of `gen_ai.output.messages`, with the first finish
    reason that `attributes` already holds."""
    message: dict[str, Any] = {"role": "assistant", "parts": _parts(texts)}
    reasons = attributes.get(A.GEN_AI_RESPONSE_FINISH_REASONS)
    if reasons:
        message["finish_reason"] = reasons[0]
    attributes[A.GEN_AI_OUTPUT_MESSAGES] = json.dumps([message], ensure_ascii=False)


# --- responses -----------------------------------------------------------------------


def _set_common(out: dict[str, Any], response: Any, request_id_attribute: str) -> None:
    """The response's id and model, and the request id the SDK put on it."""
    response_id = getattr(response, "id", None)
    if isinstance(response_id, str):
        out[A.GEN_AI_RESPONSE_ID] = response_id
    model = getattr(response, "model", None)
    if isinstance(model, str):
        out[A.GEN_AI_RESPONSE_MODEL] = model
    request_id(out, request_id_attribute, getattr(response, "_request_id", None))


def openai_chat_response(response: Any) -> tuple[dict[str, Any], Usage | None]:
    """Attributes and usage of a `ChatCompletion` (or `ParsedChatCompletion`)."""
    out: dict[str, Any] = {}
    _set_common(out, response, A.OPENAI_REQUEST_ID)
    reasons = []  # a loop, not a comprehension: no function call for one choice
    for choice in response.choices or ():
        if choice.finish_reason:
            reasons.append(choice.finish_reason)
        message = choice.message
        if message is not None and message.refusal:
            out[A.REFUSED] = True
    if reasons:
        out[A.GEN_AI_RESPONSE_FINISH_REASONS] = reasons
        refused_by_filter(out, reasons)
    tier = openai_served(out, response.service_tier, response.system_fingerprint)
    return out, openai_chat_usage(response.usage, tier, out)


def refused_by_filter(out: dict[str, Any], reasons: list[str]) -> None:
    """OpenAI's (and Azure's) `content_filter` ending: the answer was withheld, a refusal."""
    if "content_filter" in reasons:
        out[A.REFUSED] = True


def openai_served(out: dict[str, Any], tier: Any, fingerprint: Any = None) -> Any:
    """Record the service tier that served an OpenAI call and the backend's fingerprint
    (it changes when OpenAI changes what runs behind a pinned model); returns the tier."""
    if isinstance(tier, str):
        out[A.OPENAI_RESPONSE_SERVICE_TIER] = tier
    if isinstance(fingerprint, str):
        out[A.OPENAI_RESPONSE_SYSTEM_FINGERPRINT] = fingerprint
    return tier


def _openai_variant(tier: Any) -> tuple[str, str] | None:
    """The price variant of an OpenAI service tier (`flex`, `priority`), None for the
    standard price."""
    return ("service_tier", tier) if isinstance(tier, str) and tier != "default" else None


def openai_chat_usage(
    usage: Any, tier: Any = None, out: dict[str, Any] | None = None
) -> Usage | None:
    """The counts of a chat `usage`, priced at the service `tier` that served it; the
    reasoning tokens go to `out`."""
    if usage is None:
        return None
    cached, written = _openai_cache(getattr(usage, "prompt_tokens_details", None))
    if out is not None:
        _reasoning(out, getattr(usage, "completion_tokens_details", None), "reasoning_tokens")
    prompt, completion = _int(usage.prompt_tokens), _int(getattr(usage, "completion_tokens", 0))
    variant = _openai_variant(tier)
    return _new_usage((prompt, completion, cached, written, 0, 0, variant, None, None))


def _openai_cache(details: Any) -> tuple[int, int]:
    """The input tokens a usage's `details` says were read from and written to OpenAI's
    prompt cache. Newer models bill the writes above the input price (GPT-6's at 1.25x)."""
    if details is None:
        return 0, 0
    read = getattr(details, "cached_tokens", 0)
    return _int(read), _int(getattr(details, "cache_write_tokens", 0))


def _reasoning(out: dict[str, Any], details: Any, field: str) -> None:
    """The reasoning (thinking) tokens of a usage's output details, where reported."""
    if details is not None:
        tokens = getattr(details, field, None)
        if isinstance(tokens, int):
            out[A.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] = tokens


def openai_chat_text(response: Any) -> list[str]:
    return [c.message.content for c in response.choices or () if c.message.content]


#: The statuses a Responses API response ends in.
_FINISHED = frozenset({"completed", "incomplete", "failed", "cancelled"})


def openai_responses_response(response: Any) -> tuple[dict[str, Any], Usage | None]:
    """Attributes and usage of a Responses API `Response` (a stream's final event holds
    one with no request id: the stream's reader takes it from the stream)."""
    out: dict[str, Any] = {}
    _set_common(out, response, A.OPENAI_REQUEST_ID)
    status = getattr(response, "status", None)
    if status in _FINISHED:
        details = getattr(response, "incomplete_details", None)
        reason = getattr(details, "reason", None) if details is not None else None
        reasons = [reason if isinstance(reason, str) else status]
        out[A.GEN_AI_RESPONSE_FINISH_REASONS] = reasons
        refused_by_filter(out, reasons)
        if status == "failed":  # the call failed though its HTTP request did not
            out[A.ERROR_TYPE] = _failure(response)
    elif getattr(response, "background", None) is True:  # queued or in progress
        out[A.BACKGROUND_STATUS] = status
    tier = openai_served(out, getattr(response, "service_tier", None))
    usage = getattr(response, "usage", None)
    if usage is None:
        return out, None
    cached, written = _openai_cache(getattr(usage, "input_tokens_details", None))
    _reasoning(out, getattr(usage, "output_tokens_details", None), "reasoning_tokens")
    counts = (_int(usage.input_tokens), _int(usage.output_tokens), cached, written, 0)
    searches = 0  # the web search tool's calls are output items, billed apiece
    for item in getattr(response, "output", None) or ():
        kind = getattr(item, "type", None)
        if kind == "web_search_call":
            searches += 1
        elif kind == "message" and _refuses(item):
            out[A.REFUSED] = True
    return out, _new_usage((*counts, searches, _openai_variant(tier), None, None))


def finished_in_background(response: Any) -> bool:
    """Whether `response` is a Responses API response run in the background that has
    ended (completed, incomplete, failed or cancelled)."""
    return (
        getattr(response, "background", None) is True
        and getattr(response, "status", None) in _FINISHED
        and isinstance(getattr(response, "id", None), str)
    )


def openai_background_end(response: Any) -> dict[str, Any]:
    """How a background response ended: its status, the server's time from creating to
    finishing it, and a failure's code (OpenAI reports it in the response, not as an
    HTTP error)."""
    out: dict[str, Any] = {A.BACKGROUND_STATUS: response.status}
    created = getattr(response, "created_at", None)
    completed = getattr(response, "completed_at", None)
    if isinstance(created, _NUMBERS) and isinstance(completed, _NUMBERS):
        out[A.BACKGROUND_DURATION_MS] = (completed - created) * 1000.0
    if response.status == "failed":
        out[A.ERROR_TYPE] = _failure(response)
    return out


def _failure(response: Any) -> str:
    """The error type of a Responses API response that failed: its error's code (OpenAI
    reports a failure in the response, not as an HTTP error), else "failed"."""
    return failure_code(getattr(getattr(response, "error", None), "code", None), "failed")


def failure_code(code: Any, default: str) -> str:
    """The `error.type` of a failure a reply reports: its code when it names one."""
    return code if isinstance(code, str) and code else default


def _refuses(message: Any) -> bool:
    """Whether a Responses output message holds a `refusal` part instead of text."""
    return any(getattr(part, "type", None) == "refusal" for part in message.content or ())


def openai_responses_text(response: Any) -> list[str]:
    text = getattr(response, "output_text", None)
    return [text] if isinstance(text, str) and text else []


def openai_embeddings_response(response: Any) -> tuple[dict[str, Any], Usage | None]:
    """Attributes and usage of a `CreateEmbeddingResponse`."""
    out: dict[str, Any] = {}
    _set_common(out, response, A.OPENAI_REQUEST_ID)
    usage = getattr(response, "usage", None)
    if usage is None:
        return out, None
    return out, _new_usage((_int(usage.prompt_tokens), 0, 0, 0, 0, 0, None, None, None))


def anthropic_message_response(response: Any) -> tuple[dict[str, Any], Usage | None]:
    """Attributes and usage of an Anthropic `Message` (finish reasons as the provider's)."""
    out: dict[str, Any] = {}
    _set_common(out, response, A.ANTHROPIC_REQUEST_ID)
    anthropic_stop_reason(out, response.stop_reason, response)
    return out, anthropic_usage(response.usage, None, out)


def anthropic_beta_message_response(response: Any) -> tuple[dict[str, Any], Usage | None]:
    """`anthropic_message_response` of a beta `BetaMessage`, with what only the beta API
    reports: the usage's `iterations` (`anthropic_iterations`) and, when a fallback
    answered, the `fallback` block that says why the model before it refused."""
    out, usage = anthropic_message_response(response)
    usage = anthropic_iterations(out, getattr(response.usage, "iterations", None), usage)
    if A.FALLBACK_MODEL in out:
        for block in response.content or ():
            if getattr(block, "type", None) == "fallback":
                anthropic_refusal_category(out, getattr(block, "trigger", None))
                break
    return out, usage


def anthropic_stop_reason(out: dict[str, Any], reason: Any, details_of: Any = None) -> None:
    """The stop reason as the finish reason; `refusal` is a refusal (a safety classifier
    declined the request), whose category `details_of`'s `stop_details` names: the
    message's, or a stream's `message_delta`'s delta."""
    if isinstance(reason, str):
        out[A.GEN_AI_RESPONSE_FINISH_REASONS] = [reason]
        if reason == "refusal":
            out[A.REFUSED] = True
            anthropic_refusal_category(out, getattr(details_of, "stop_details", None))


def anthropic_refusal_category(out: dict[str, Any], details: Any) -> None:
    """The policy area of a refusal's `stop_details` or of a fallback block's `trigger`."""
    category = getattr(details, "category", None)
    if isinstance(category, str):
        out[A.REFUSAL_CATEGORY] = category


def anthropic_fallback(out: dict[str, Any], model: Any, trigger: Any = None) -> None:
    """A server-side fallback answered: the requested model refused (for the reason
    `trigger` names, when known), `model` served."""
    out[A.REFUSED] = True
    if isinstance(model, str):
        out[A.FALLBACK_MODEL] = model
    anthropic_refusal_category(out, trigger)


def anthropic_iterations(out: dict[str, Any], iterations: Any, usage: Usage | None) -> Usage | None:
    """Read a beta usage's sampling steps. A `fallback_message` step means a fallback model
    answered after the requested one refused (`anthropic_fallback`). `compaction` steps are
    billed but left out of the usage's counts: their tokens go to `out` under anthropic's
    own span's names and to the returned usage's `compaction`, so they are priced."""
    if not iterations:
        return usage
    fresh = output = read = write = 0
    compacted = False
    for step in iterations:
        kind = getattr(step, "type", None)
        if kind == "fallback_message":
            anthropic_fallback(out, getattr(step, "model", None))
        elif kind == "compaction":
            compacted = True
            fresh += _int(getattr(step, "input_tokens", 0))
            output += _int(getattr(step, "output_tokens", 0))
            read += _int(getattr(step, "cache_read_input_tokens", 0))
            write += _int(getattr(step, "cache_creation_input_tokens", 0))
    if not compacted:
        return usage
    out[A.ANTHROPIC_COMPACTION_INPUT_TOKENS] = fresh + read + write
    out[A.ANTHROPIC_COMPACTION_OUTPUT_TOKENS] = output
    if usage is None:
        return None
    geo = usage.inference_geo
    counts = (fresh + read + write, output, read, write, 0, 0, usage.price_variant, None, geo)
    return usage._replace(compaction=_new_usage(counts))


def request_id(out: dict[str, Any], attribute: str, value: Any) -> None:
    """The id a provider's support asks for about one call (the SDKs' `_request_id` of a
    parsed response, or a stream's response header), under the provider's `attribute`."""
    if isinstance(value, str) and value:
        out[attribute] = value


def header_request_id(out: dict[str, Any], attribute: str, http: Any, header: str) -> None:
    """`request_id` from `header` of a stream's HTTP response `http` (None: unknown); a
    stream broken off before its last event still has it."""
    if http is not None:
        request_id(out, attribute, http.headers.get(header))


def anthropic_usage(
    usage: Any, earlier: Any = None, out: dict[str, Any] | None = None
) -> Usage | None:
    """The counts of an Anthropic `usage`; the input count includes the cache's. Cache
    writes kept an hour, web searches, fast mode (`speed`) and the inference geography
    are priced as such; the service tier, the geography, the cache writes by lifetime
    and the thinking tokens go to `out`.

    For a stream, `usage` is the last `message_delta`'s: cumulative, but it may leave out
    (None) the input and cache counts, which then come from `earlier`, the
    `message_start`'s, as the SDK's own stream accumulator does; the service tier,
    speed, geography and cache writes by lifetime are only there.
    """
    if usage is None:
        usage, earlier = earlier, None
        if usage is None:
            return None
    fresh = getattr(usage, "input_tokens", None)
    read = getattr(usage, "cache_read_input_tokens", None)
    write = getattr(usage, "cache_creation_input_tokens", None)
    served = usage
    if earlier is not None:
        served = earlier
        if fresh is None:
            fresh = getattr(earlier, "input_tokens", None)
        if read is None:
            read = getattr(earlier, "cache_read_input_tokens", None)
        if write is None:
            write = getattr(earlier, "cache_creation_input_tokens", None)
    lifetimes = getattr(served, "cache_creation", None)
    hour = getattr(lifetimes, "ephemeral_1h_input_tokens", None) if lifetimes else None
    geo = getattr(served, "inference_geo", None)
    if not isinstance(geo, str):
        geo = None
    if out is not None:
        tier = getattr(served, "service_tier", None)
        if isinstance(tier, str):
            out[A.ANTHROPIC_RESPONSE_SERVICE_TIER] = tier
        if geo is not None:
            out[A.ANTHROPIC_INFERENCE_GEO] = geo
        if lifetimes is not None:
            minutes = getattr(lifetimes, "ephemeral_5m_input_tokens", None)
            if isinstance(minutes, int):
                out[A.ANTHROPIC_CACHE_WRITE_5M_TOKENS] = minutes
            if isinstance(hour, int):
                out[A.ANTHROPIC_CACHE_WRITE_1H_TOKENS] = hour
        _reasoning(out, getattr(usage, "output_tokens_details", None), "thinking_tokens")
    variant = ("speed", "fast") if getattr(served, "speed", None) == "fast" else None
    tools = getattr(usage, "server_tool_use", None) or getattr(earlier, "server_tool_use", None)
    searches = _int(getattr(tools, "web_search_requests", 0)) if tools is not None else 0
    read, write = _int(read), _int(write)
    counts = (_int(fresh) + read + write, _int(usage.output_tokens), read, write)
    return _new_usage((*counts, min(_int(hour), write), searches, variant, None, geo))


def anthropic_text(response: Any) -> list[str]:
    return [b.text for b in response.content or () if getattr(b, "type", None) == "text"]
