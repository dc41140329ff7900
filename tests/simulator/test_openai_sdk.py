"""Every OpenAI endpoint through the real openai SDK: sync, async, streaming.

Besides reading the typed objects, the raw JSON is validated strictly against the
SDK's own models, which the SDK itself only constructs leniently: a missing required
field would pass unnoticed otherwise.
"""

from __future__ import annotations

import base64
import json

import numpy as np
import openai
import pytest
from openai.types import CreateEmbeddingResponse
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from canarytrace.simulator import Simulator, count_tokens
from canarytrace.simulator.openai_api import embedding_vector

CAPITAL = "What is the capital of Australia?"


def ask(prompt: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "Be brief."}, {"role": "user", "content": prompt}]


def test_chat_completion_is_fully_parsed(oai: openai.OpenAI, simulator: Simulator) -> None:
    raw = oai.chat.completions.with_raw_response.create(
        model="gpt-4o-2024-11-20", messages=ask(CAPITAL)
    )
    ChatCompletion.model_validate(json.loads(raw.text), strict=False)
    reply = raw.parse()
    assert reply.id.startswith("chatcmpl-")
    assert reply.object == "chat.completion"
    assert reply.model == "gpt-4o-2024-11-20"
    assert raw.headers["x-request-id"].startswith("req_")
    choice = reply.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    text = choice.message.content
    assert text is not None
    assert simulator.answer_is_correct(CAPITAL, text) is not None
    usage = reply.usage
    assert usage is not None
    assert usage.completion_tokens == count_tokens(text)
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 0


def test_chat_max_tokens_cuts_the_answer_with_finish_reason_length(oai: openai.OpenAI) -> None:
    reply = oai.chat.completions.create(
        model="gpt-4-0125-preview", messages=ask("Write an essay."), max_tokens=5
    )
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 5
    assert count_tokens(reply.choices[0].message.content or "") == 5


def test_chat_stop_sequence_cuts_the_answer_with_finish_reason_stop(oai: openai.OpenAI) -> None:
    reply = oai.chat.completions.create(model="gpt-4o", messages=ask(CAPITAL), stop=["."])
    text = reply.choices[0].message.content or ""
    assert "." not in text
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None
    assert reply.usage.completion_tokens == count_tokens(text)


def test_chat_stream_with_include_usage_ends_with_a_usage_chunk(oai: openai.OpenAI) -> None:
    stream = oai.chat.completions.create(
        model="gpt-4o",
        messages=ask(CAPITAL),
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk.model_dump())
    assert {c.model for c in chunks} == {"gpt-4o-2024-08-06"}
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop"
    assert finishes[:-1] == [None] * (len(finishes) - 1)
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert last.usage.completion_tokens == count_tokens(text)
    assert all(c.usage is None for c in chunks[:-1])


def test_chat_stream_without_include_usage_has_no_usage(oai: openai.OpenAI) -> None:
    chunks = list(oai.chat.completions.create(model="gpt-4o", messages=ask(CAPITAL), stream=True))
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


@pytest.mark.anyio
async def test_async_chat_and_stream(aoai: openai.AsyncOpenAI) -> None:
    reply = await aoai.chat.completions.create(model="gpt-4.1", messages=ask(CAPITAL))
    assert reply.model == "gpt-4.1-2025-04-14"
    assert reply.choices[0].finish_reason == "stop"
    stream = await aoai.chat.completions.create(
        model="gpt-4.1",
        messages=ask(CAPITAL),
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0


def test_responses_create_is_fully_parsed(oai: openai.OpenAI) -> None:
    raw = oai.responses.with_raw_response.create(
        model="gpt-4o-2024-11-20", input=CAPITAL, instructions="Be brief."
    )
    Response.model_validate(json.loads(raw.text))
    reply = raw.parse()
    assert reply.id.startswith("resp_")
    assert reply.model == "gpt-4o-2024-11-20"
    assert reply.status == "completed"
    assert reply.instructions == "Be brief."
    assert (
        "Canberra" in reply.output_text
        or "Sydney" in reply.output_text
        or "Melbourne" in reply.output_text
    )
    assert reply.usage is not None
    assert reply.usage.output_tokens == count_tokens(reply.output_text)
    assert reply.usage.total_tokens == reply.usage.input_tokens + reply.usage.output_tokens


def test_responses_stream_sends_the_event_sequence(oai: openai.OpenAI) -> None:
    events = list(oai.responses.create(model="gpt-4.1", input=CAPITAL, stream=True))
    adapter: TypeAdapter[ResponseStreamEvent] = TypeAdapter(ResponseStreamEvent)
    for event in events:
        adapter.validate_python(event.model_dump())
    types = [e.type for e in events]
    deltas = types.count("response.output_text.delta")
    assert deltas > 0
    assert types == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * deltas,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    completed = events[-1].response  # type: ignore[union-attr]
    assert completed.usage is not None
    assert completed.usage.output_tokens == deltas
    assert completed.model == "gpt-4.1-2025-04-14"


def test_responses_stream_helper_accumulates_the_final_response(oai: openai.OpenAI) -> None:
    with oai.responses.stream(model="gpt-4.1", input=CAPITAL) as stream:
        final = stream.get_final_response()
    assert final.status == "completed"
    assert final.model == "gpt-4.1-2025-04-14"
    assert final.usage is not None
    assert final.usage.output_tokens == count_tokens(final.output_text)


def test_responses_truncated_stream_ends_incomplete(oai: openai.OpenAI) -> None:
    # As the API does, a cut answer ends with response.incomplete, not response.completed
    # (so the SDK's stream helper, which waits for response.completed, cannot be used).
    events = list(
        oai.responses.create(
            model="gpt-4.1", input="Tell a story.", max_output_tokens=7, stream=True
        )
    )
    final = events[-1]
    assert final.type == "response.incomplete"
    assert final.response.status == "incomplete"
    assert final.response.incomplete_details is not None
    assert final.response.incomplete_details.reason == "max_output_tokens"
    assert final.response.usage is not None
    assert final.response.usage.output_tokens == 7


@pytest.mark.anyio
async def test_async_responses(aoai: openai.AsyncOpenAI) -> None:
    reply = await aoai.responses.create(
        model="gpt-4o", input=[{"role": "user", "content": CAPITAL}]
    )
    assert reply.model == "gpt-4o-2024-08-06"
    assert reply.output_text


@pytest.mark.parametrize("encoding", ["sdk-default", "float"])
def test_embeddings_are_deterministic_unit_vectors(oai: openai.OpenAI, encoding: str) -> None:
    texts = ["the cat sat on the mat", "the cat sat on a mat", "quarterly revenue grew"]
    options = {} if encoding == "sdk-default" else {"encoding_format": encoding}
    raw = oai.embeddings.with_raw_response.create(
        model="text-embedding-3-small", input=texts, **options
    )
    sent = json.loads(raw.http_request.content)
    assert sent["encoding_format"] == ("base64" if encoding == "sdk-default" else "float")
    reply = raw.parse()  # the SDK decodes the base64 it asked for by default
    CreateEmbeddingResponse.model_validate(reply.model_dump())
    assert reply.model == "text-embedding-3-small"
    assert [d.index for d in reply.data] == [0, 1, 2]
    vectors = np.array([d.embedding for d in reply.data])
    assert vectors.shape == (3, 1536)
    assert np.allclose(vectors[0], embedding_vector(texts[0], 1536), atol=1e-7)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similar, unrelated = vectors[0] @ vectors[1], vectors[0] @ vectors[2]
    assert similar > unrelated
    assert reply.usage.prompt_tokens == sum(count_tokens(t) for t in texts)


def test_embeddings_in_base64_are_little_endian_float32(oai: openai.OpenAI) -> None:
    reply = oai.embeddings.create(
        model="text-embedding-3-small", input="hello", encoding_format="base64"
    )
    encoded = reply.data[0].embedding
    assert isinstance(encoded, str)  # asked for explicitly, the SDK leaves it encoded
    vector = np.frombuffer(base64.b64decode(encoded), dtype="<f4")
    assert np.array_equal(vector, embedding_vector("hello", 1536))


def test_embeddings_honour_dimensions(oai: openai.OpenAI) -> None:
    reply = oai.embeddings.create(model="text-embedding-3-small", input="hello", dimensions=64)
    assert len(reply.data[0].embedding) == 64


@pytest.mark.anyio
async def test_async_embeddings(aoai: openai.AsyncOpenAI) -> None:
    reply = await aoai.embeddings.create(model="text-embedding-3-small", input="hello")
    assert np.allclose(reply.data[0].embedding, embedding_vector("hello", 1536), atol=1e-7)


def test_models_list_and_retrieve(oai: openai.OpenAI, simulator: Simulator) -> None:
    ids = {m.id for m in oai.models.list()}
    assert {"gpt-4-0125-preview", "gpt-4o-2024-11-20", "gpt-4o", "text-embedding-3-small"} <= ids
    assert "gpt-4-0314" not in ids  # retired
    assert "claude-3-5-sonnet-20241022" not in ids  # another provider
    model = oai.models.retrieve("gpt-4o-2024-11-20")
    assert (model.id, model.object, model.owned_by) == ("gpt-4o-2024-11-20", "model", "system")
    assert model.created == simulator.profiles.models["gpt-4o-2024-11-20"].created
