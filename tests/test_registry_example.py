"""The example registry shipped at the repo root reproduces the article's set-up."""

from pathlib import Path

from canarytrace.registry import load_registry

EXAMPLE = Path(__file__).resolve().parents[1] / "models.yaml"


def test_example_registry_has_the_articles_routes() -> None:
    registry = load_registry(EXAMPLE)
    chat = registry.routes["chat"]
    assert (chat.production, chat.canary, chat.fallback) == (
        "claude-3-5-sonnet-20241022",
        "claude-3-opus-20241219",
        "claude-3-opus-20240229",
    )
    summarize = registry.routes["summarize"]
    assert (summarize.production, summarize.canary) == ("gpt-4-0125-preview", "gpt-4o-2024-11-20")
    for model_id in ("claude-3-5-sonnet-20241022", "gpt-4o-2024-11-20"):
        assert registry.model(model_id) is not None
