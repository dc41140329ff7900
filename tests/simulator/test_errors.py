"""Every error kind reaches the caller as the SDK's own exception, in the provider's shape."""

from __future__ import annotations

import anthropic
import httpx2
import openai
import pytest

from canarytrace.simulator import FORCE_ERROR_HEADER, Profiles, Simulator
from canarytrace.simulator.profiles import ErrorRates, ModelProfile

OPENAI_CLASSES = {
    "invalid_request": (openai.BadRequestError, 400, "invalid_request_error"),
    "authentication": (openai.AuthenticationError, 401, "invalid_request_error"),
    "not_found": (openai.NotFoundError, 404, "invalid_request_error"),
    "rate_limit": (openai.RateLimitError, 429, "requests"),
    "server_error": (openai.InternalServerError, 500, "server_error"),
    "overloaded": (openai.InternalServerError, 503, "server_error"),
}
ANTHROPIC_CLASSES = {
    "invalid_request": (anthropic.BadRequestError, 400, "invalid_request_error"),
    "authentication": (anthropic.AuthenticationError, 401, "authentication_error"),
    "not_found": (anthropic.NotFoundError, 404, "not_found_error"),
    "rate_limit": (anthropic.RateLimitError, 429, "rate_limit_error"),
    "server_error": (anthropic.InternalServerError, 500, "api_error"),
    "overloaded": (anthropic.OverloadedError, 529, "overloaded_error"),
}
HELLO = [{"role": "user", "content": "Hello"}]


@pytest.mark.parametrize("kind", OPENAI_CLASSES)
def test_openai_error_classes(oai: openai.OpenAI, kind: str) -> None:
    cls, status, type_ = OPENAI_CLASSES[kind]
    with pytest.raises(cls) as caught:
        oai.chat.completions.create(
            model="gpt-4o", messages=HELLO, extra_headers={FORCE_ERROR_HEADER: kind}
        )
    error = caught.value
    assert type(error) is cls
    assert error.status_code == status
    assert error.type == type_
    assert error.request_id is not None
    assert error.request_id.startswith("req_")
    assert isinstance(error.body, dict)
    assert set(error.body) == {"message", "type", "param", "code"}
    assert ("retry-after" in error.response.headers) == (kind == "rate_limit")


@pytest.mark.parametrize("kind", ANTHROPIC_CLASSES)
def test_anthropic_error_classes(ant: anthropic.Anthropic, kind: str) -> None:
    cls, status, type_ = ANTHROPIC_CLASSES[kind]
    with pytest.raises(cls) as caught:
        ant.messages.create(
            model="claude-3-5-sonnet-20241022",
            max_tokens=10,
            messages=HELLO,  # type: ignore[arg-type]
            extra_headers={FORCE_ERROR_HEADER: kind},
        )
    error = caught.value
    assert type(error) is cls
    assert error.status_code == status
    assert error.body == {
        "type": "error",
        "error": {"type": type_, "message": error.body["error"]["message"]},  # type: ignore[index]
        "request_id": error.response.headers["request-id"],
    }
    assert ("retry-after" in error.response.headers) == (kind == "rate_limit")


def test_missing_api_key_is_401(oai: openai.OpenAI, ant: anthropic.Anthropic) -> None:
    # The SDKs refuse to send without a key, unless the header is omitted on purpose.
    with pytest.raises(openai.AuthenticationError) as caught:
        oai.models.list(extra_headers={"Authorization": openai.Omit()})
    assert "API key" in caught.value.message
    no_key = {"Authorization": anthropic.Omit(), "X-Api-Key": anthropic.Omit()}
    with pytest.raises(anthropic.AuthenticationError):
        ant.messages.create(
            model="claude-3-5-sonnet-20241022",
            max_tokens=5,
            messages=HELLO,  # type: ignore[arg-type]
            extra_headers=no_key,
        )


@pytest.mark.parametrize(
    "model", ["gpt-4-0314", "gpt-5-does-not-exist", "claude-3-5-sonnet-20241022"]
)
def test_retired_unknown_or_foreign_openai_model_is_404(oai: openai.OpenAI, model: str) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        oai.chat.completions.create(model=model, messages=HELLO)  # type: ignore[arg-type]
    assert caught.value.code == "model_not_found"
    assert model in caught.value.message


@pytest.mark.parametrize("model", ["claude-2.1", "claude-9", "gpt-4o-2024-11-20"])
def test_retired_unknown_or_foreign_anthropic_model_is_404(
    ant: anthropic.Anthropic, model: str
) -> None:
    with pytest.raises(anthropic.NotFoundError):
        ant.messages.create(model=model, max_tokens=5, messages=HELLO)  # type: ignore[arg-type]


def test_invalid_requests_are_400(oai: openai.OpenAI, ant: anthropic.Anthropic) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        oai.chat.completions.create(model="gpt-4o", messages=[])
    assert caught.value.param == "messages"
    with pytest.raises(openai.BadRequestError):
        oai.chat.completions.create(model="gpt-4o", messages=HELLO, max_tokens=0)  # type: ignore[arg-type]
    with pytest.raises(anthropic.BadRequestError):
        ant.messages.create(model="claude-3-5-sonnet-20241022", max_tokens=0, messages=HELLO)  # type: ignore[arg-type]
    with pytest.raises(anthropic.BadRequestError):
        ant.messages.create(model="claude-3-5-sonnet-20241022", max_tokens=5, messages=[])
    with pytest.raises(openai.BadRequestError) as caught:
        oai.chat.completions.create(
            model="gpt-4o", messages=HELLO, stream_options={"include_usage": True}
        )  # type: ignore[call-overload]
    assert caught.value.param == "stream_options"
    with pytest.raises(openai.BadRequestError) as caught:
        oai.embeddings.create(model="text-embedding-3-small", input="hi", dimensions=4096)
    assert caught.value.param == "dimensions"
    with pytest.raises(openai.BadRequestError) as caught:
        oai.responses.create(model="gpt-4o", input="hi", stream=True, temperature="hot")  # type: ignore[arg-type]
    assert caught.value.param == "temperature"


def test_malformed_json_and_unknown_paths(simulator: Simulator) -> None:
    headers = {"authorization": "Bearer test-key", "content-type": "application/json"}
    with httpx2.Client(headers=headers) as http:
        bad = http.post(f"{simulator.openai_base_url}/chat/completions", content=b"{not json")
        assert bad.status_code == 400
        assert bad.json()["error"]["type"] == "invalid_request_error"
        missing = http.post(f"{simulator.openai_base_url}/completions", json={})
        assert missing.status_code == 404
        assert missing.json()["error"]["message"] == "Unknown request URL: POST /v1/completions."
        foreign = http.get(f"{simulator.anthropic_base_url}/v1/nothing")
        assert foreign.status_code == 404
        assert foreign.json()["error"]["type"] == "not_found_error"


def _always(**rates: float) -> Profiles:
    failing = ErrorRates(**rates)
    return Profiles(
        models={
            "gpt-x-2025-01-01": ModelProfile(provider="openai", errors=failing),
            "claude-x-20250101": ModelProfile(provider="anthropic", errors=failing),
        }
    )


def test_profile_error_rates_draw_real_errors() -> None:
    with Simulator(_always(rate_limit=1.0), time_scale=0.5) as sim:
        oai = openai.OpenAI(base_url=sim.openai_base_url, api_key="k", max_retries=0)
        with oai, pytest.raises(openai.RateLimitError) as caught:
            oai.chat.completions.create(model="gpt-x-2025-01-01", messages=HELLO)  # type: ignore[arg-type]
        retry_after = float(caught.value.response.headers["retry-after"])
        assert 0.5 <= retry_after <= 1.5  # the profiles' 1-3 s, scaled by time_scale
        assert caught.value.response.headers["retry-after-ms"] == str(round(retry_after * 1000))
    with Simulator(_always(overloaded=1.0), time_scale=0) as sim:
        ant = anthropic.Anthropic(base_url=sim.anthropic_base_url, api_key="k", max_retries=0)
        with ant, pytest.raises(anthropic.OverloadedError):
            ant.messages.create(model="claude-x-20250101", max_tokens=5, messages=HELLO)  # type: ignore[arg-type]
    with Simulator(_always(server_error=1.0), time_scale=0) as sim:
        oai = openai.OpenAI(base_url=sim.openai_base_url, api_key="k", max_retries=0)
        with oai, pytest.raises(openai.InternalServerError):
            oai.responses.create(model="gpt-x-2025-01-01", input="Hello")


def test_sdk_retries_recover_from_transient_errors() -> None:
    # Each retry is a new draw; with half the requests failing, 8 retries almost surely
    # succeed, and the seed makes "almost surely" a fixed outcome.
    statuses: list[int] = []
    hooks = {"response": [lambda response: statuses.append(response.status_code)]}
    with Simulator(_always(server_error=0.5), seed=3, time_scale=0) as sim:
        http = openai.DefaultHttpxClient(event_hooks=hooks)
        oai = openai.OpenAI(
            base_url=sim.openai_base_url, api_key="k", max_retries=8, http_client=http
        )
        with oai:
            for _ in range(10):
                reply = oai.chat.completions.create(model="gpt-x-2025-01-01", messages=HELLO)  # type: ignore[arg-type]
                assert reply.choices[0].finish_reason == "stop"
    assert statuses.count(200) == 10
    assert set(statuses) == {200, 500}
