"""Every span attribute and span name canarytrace writes or reads, in one place.

The instrumentation writes these names and the analysis loaders read them back, so
each name is spelled exactly once. `gen_ai.*`, `server.*`, `error.type` and `openai.*`
come from the OpenTelemetry semantic conventions, `anthropic.*` from anthropic's own
span; the project's own live under `canarytrace.`.
"""

from __future__ import annotations

from typing import Final

# --- OpenTelemetry GenAI semantic conventions -------------------------------------
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
# The older name that some back-ends still read; written beside the provider name.
GEN_AI_SYSTEM: Final = "gen_ai.system"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_REQUEST_TEMPERATURE: Final = "gen_ai.request.temperature"
GEN_AI_REQUEST_MAX_TOKENS: Final = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_TOP_P: Final = "gen_ai.request.top_p"
GEN_AI_REQUEST_SEED: Final = "gen_ai.request.seed"
GEN_AI_REQUEST_STREAM: Final = "gen_ai.request.stream"
GEN_AI_REQUEST_FREQUENCY_PENALTY: Final = "gen_ai.request.frequency_penalty"
GEN_AI_REQUEST_PRESENCE_PENALTY: Final = "gen_ai.request.presence_penalty"
GEN_AI_REQUEST_CHOICE_COUNT: Final = "gen_ai.request.choice.count"
GEN_AI_REQUEST_STOP_SEQUENCES: Final = "gen_ai.request.stop_sequences"
GEN_AI_REQUEST_REASONING_LEVEL: Final = "gen_ai.request.reasoning.level"
GEN_AI_REQUEST_ENCODING_FORMATS: Final = "gen_ai.request.encoding_formats"
GEN_AI_EMBEDDINGS_DIMENSION_COUNT: Final = "gen_ai.embeddings.dimension.count"
GEN_AI_OUTPUT_TYPE: Final = "gen_ai.output.type"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_RESPONSE_ID: Final = "gen_ai.response.id"
GEN_AI_RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: Final = "gen_ai.response.time_to_first_chunk"
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: Final = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: Final = "gen_ai.usage.cache_creation.input_tokens"
GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: Final = "gen_ai.usage.reasoning.output_tokens"
GEN_AI_INPUT_MESSAGES: Final = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"
ERROR_TYPE: Final = "error.type"

# --- how a provider was asked to serve a call, and how it did ----------------------
# OpenAI's from the conventions' `openai.*` registry. Anthropic's as anthropic's own
# span names them: canarytrace replaces that span, and keeps what it recorded.
OPENAI_REQUEST_SERVICE_TIER: Final = "openai.request.service_tier"
OPENAI_RESPONSE_SERVICE_TIER: Final = "openai.response.service_tier"
OPENAI_RESPONSE_SYSTEM_FINGERPRINT: Final = "openai.response.system_fingerprint"
# The `x-request-id` OpenAI's support asks for; the registry names none, so it is
# spelt as anthropic's span spells its own.
OPENAI_REQUEST_ID: Final = "openai.request.id"
ANTHROPIC_REQUEST_SERVICE_TIER: Final = "anthropic.request.service_tier"
ANTHROPIC_RESPONSE_SERVICE_TIER: Final = "anthropic.response.service_tier"
ANTHROPIC_THINKING_TYPE: Final = "anthropic.thinking.type"
ANTHROPIC_THINKING_BUDGET_TOKENS: Final = "anthropic.thinking.budget_tokens"
ANTHROPIC_BETA: Final = "anthropic.beta"
ANTHROPIC_REQUEST_ID: Final = "anthropic.request.id"
#: Where Anthropic ran the call (`usage.inference_geo`: "global", or "us" at 1.1x the price).
ANTHROPIC_INFERENCE_GEO: Final = "anthropic.usage.inference_geo"
ANTHROPIC_CACHE_WRITE_5M_TOKENS: Final = "anthropic.usage.cache_creation.ephemeral_5m_input_tokens"
ANTHROPIC_CACHE_WRITE_1H_TOKENS: Final = "anthropic.usage.cache_creation.ephemeral_1h_input_tokens"
# Tokens of server-side context compactions, which Anthropic bills but leaves out of the
# usage's top-level counts (anthropic's own span's names).
ANTHROPIC_COMPACTION_INPUT_TOKENS: Final = "anthropic.usage.compaction.input_tokens"
ANTHROPIC_COMPACTION_OUTPUT_TOKENS: Final = "anthropic.usage.compaction.output_tokens"

# GenAI client metrics (semantic conventions) and the project's cost counter.
METRIC_OPERATION_DURATION: Final = "gen_ai.client.operation.duration"
METRIC_TIME_TO_FIRST_CHUNK: Final = "gen_ai.client.operation.time_to_first_chunk"
METRIC_TOKEN_USAGE: Final = "gen_ai.client.token.usage"
METRIC_TOKEN_TYPE: Final = "gen_ai.token.type"
METRIC_COST: Final = "canarytrace.cost"

# --- canarytrace's own, on every LLM span ------------------------------------------
ROUTE: Final = "canarytrace.route"
TIER: Final = "canarytrace.tier"  # production | canary | fallback
PINNED: Final = "canarytrace.pinned"  # bool: the request model carries a snapshot date/version
ALIAS_DRIFT: Final = "canarytrace.alias_drift"  # bool: response model is not what the pin implies
COST_USD: Final = "canarytrace.cost_usd"
ROLLOUT_PERCENT: Final = "canarytrace.rollout_percent"  # the stage's canary share, 0-100
COHORT_BUCKET: Final = "canarytrace.cohort_bucket"  # 0..9999, the user's routing bucket
USER_HASH: Final = "canarytrace.user_hash"  # keyed hash of the user id, never the id itself
# A stream's first token of the answer (text or a tool call's input; not thinking).
TIME_TO_FIRST_TOKEN_MS: Final = "canarytrace.time_to_first_token_ms"
# The requested model declined to answer (a refusal: Anthropic's stop reason `refusal`,
# OpenAI's `refusal` output or `content_filter` ending), also when a server-side fallback
# model then answered instead. Set only when true.
REFUSED: Final = "canarytrace.refused"
# The policy area a refusal names (Anthropic's `cyber`, `bio`, ...), where it names one.
REFUSAL_CATEGORY: Final = "canarytrace.refusal_category"
# The model that answered after the requested one refused (Anthropic's server-side
# `fallbacks`): a substitution the request asked for, so not alias drift.
FALLBACK_MODEL: Final = "canarytrace.fallback_model"
# The request asked OpenAI to run the response in the background (`background=True`):
# the call returns at once, queued, and the answer's usage and cost come with the
# background result record below.
BACKGROUND: Final = "canarytrace.background"

TIERS: Final = ("production", "canary", "fallback")

# --- feedback and outcome records ---------------------------------------------------
# canarytrace.feedback() and canarytrace.outcome() each emit one short span of their own
# (it may come minutes later, from another process), linked to the LLM call's span and
# carrying that call's ids as attributes, so any loader can join it to its call.
FEEDBACK_SPAN_NAME: Final = "canarytrace.feedback"
OUTCOME_SPAN_NAME: Final = "canarytrace.outcome"
TARGET_TRACE_ID: Final = "canarytrace.target.trace_id"  # 32 lowercase hex digits
TARGET_SPAN_ID: Final = "canarytrace.target.span_id"  # 16 lowercase hex digits
FEEDBACK_SCORE: Final = "canarytrace.feedback.score"  # float, the app's scale (e.g. 1-5)
FEEDBACK_COMMENT: Final = "canarytrace.feedback.comment"
OUTCOME_OK: Final = "canarytrace.outcome.ok"  # bool: False = a wrong answer the app caught
OUTCOME_KIND: Final = "canarytrace.outcome.kind"  # str, e.g. "wrong_answer"

# --- background results ----------------------------------------------------------------
# A background response's end, seen when the application retrieves (or cancels) it,
# maybe in another process: one short span carrying the response id, which joins it to
# the call that created it (`gen_ai.response.id`), with the usage, cost, finish reasons
# and refusal read as from any response, the status it ended in and the time the server
# took from creating to finishing it.
BACKGROUND_RESULT_SPAN_NAME: Final = "canarytrace.background_result"
BACKGROUND_STATUS: Final = "canarytrace.background.status"  # completed | failed | ...
BACKGROUND_DURATION_MS: Final = "canarytrace.background.duration_ms"

# The instrumentation scope name of canarytrace's tracer and meter.
INSTRUMENTATION_SCOPE: Final = "canarytrace"
