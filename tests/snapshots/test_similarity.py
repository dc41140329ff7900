"""Long outputs: a change anywhere in them shows, and the model never reads a cut-off text."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from canarytrace.snapshots.classify import classify
from canarytrace.snapshots.embedders import LexicalEmbedder
from canarytrace.snapshots.similarity import EmbeddingCache, Similarity, cosine

LONG = Path(__file__).resolve().parent / "fixtures" / "long"
INTRO = " ".join(["Our store sells shoes, shirts and hats for all seasons and all ages."] * 20)
REFUND = (
    "If everything is in order, we refund the original payment method, and your bank usually "
    "shows the money within five to seven business days."
)
NO_REFUND = (
    "Even if everything is in order, we do not refund the payment; instead we send the item "
    "back to you, and your bank is not credited."
)


def _text(name: str) -> str:
    return (LONG / f"{name}.txt").read_text()


def _paragraphs_reversed(text: str) -> str:
    first, *rest = text.split("\n\n")
    return "\n\n".join([first, *reversed(rest)])


def test_long_outputs_are_compared_whole(semantic: Similarity) -> None:
    """MiniLM reads 256 word-pieces: past them a changed policy scored 1.00, and within them
    one changed sentence of 16 barely moved the vector (0.98). Rewordings must still pass."""
    returns, setup = _text("returns"), _text("setup")
    pairs = {
        "last sentence flipped after 300 word-pieces": (
            INTRO + "\n\nCustomers may return any item for a full refund.",
            INTRO + "\n\nCustomers may never return items; all sales are final and no refunds "
            "are given.",
        ),
        "one sentence flipped mid-answer": (returns, returns.replace(REFUND, NO_REFUND)),
        "reworded": (returns, _text("returns-reworded")),
        "reworded, paragraphs reversed": (returns, _paragraphs_reversed(_text("returns-reworded"))),
        "more concise": (returns, _text("returns-concise")),
        "list reworded as bullets": (setup, _text("setup-reworded")),
        "list reworded, reordered": (setup, _paragraphs_reversed(_text("setup-reworded"))),
    }
    scores = {name: semantic(old, new) for name, (old, new) in pairs.items()}
    verdicts = {
        name: classify(old, new, similarity=scores[name], threshold=0.8).verdict
        for name, (old, new) in pairs.items()
    }
    assert verdicts == {
        "last sentence flipped after 300 word-pieces": "worrying",
        "one sentence flipped mid-answer": "worrying",
        "reworded": "acceptable",
        "reworded, paragraphs reversed": "acceptable",
        "more concise": "acceptable",
        "list reworded as bullets": "acceptable",
        "list reworded, reordered": "acceptable",
    }, scores


class WordModel(LexicalEmbedder):
    """A model that reads 12 words, counting what it is given to embed."""

    name = "words-12"
    max_tokens = 12

    def __init__(self) -> None:
        self.embedded: list[str] = []

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.embedded.extend(texts)
        return super().embed(texts)


def test_a_bounded_model_only_gets_what_it_reads_and_pieces_are_cached(tmp_path: Path) -> None:
    short = "Refunds within 30 days."
    long = "Refunds within 30 days. Keep the receipt.\nSale items get store credit only. " + (
        "a very long line with no full stop that goes on and on well past twelve words"
    )
    model = WordModel()
    similarity = Similarity(model, EmbeddingCache(tmp_path, model.name))
    assert similarity(short, "Refunds for 30 days.") == round(
        cosine(*LexicalEmbedder().embed([short, "Refunds for 30 days."])), 4
    )  # texts it reads whole: the plain cosine, as before
    assert similarity(long, long + " Gift cards too.") < 1.0  # the change past 12 words shows
    assert max(len(text.split()) for text in model.embedded) <= model.max_tokens

    again = WordModel()
    Similarity(again, EmbeddingCache(tmp_path, again.name))(long, long + " Gift cards too.")
    assert again.embedded == []  # every piece came from the SQLite file


def test_a_batch_ahead_embeds_the_pieces_a_long_text_is_compared_by(tmp_path: Path) -> None:
    """The review and compare embed every text in one batch first: a long text was then
    embedded whole, for nothing, as its comparison reads only its pieces."""
    long = "Refunds within 30 days. Keep the receipt.\nSale items get store credit only. " + (
        "a very long line with no full stop that goes on and on well past twelve words"
    )
    changed = long + " Gift cards too."
    model = WordModel()
    similarity = Similarity(model, EmbeddingCache(tmp_path, model.name))
    similarity.prefetch([long, changed, "Refunds within 30 days."])
    assert max(len(text.split()) for text in model.embedded) <= model.max_tokens
    batched = list(model.embedded)
    similarity(long, changed)
    assert model.embedded == batched  # the comparison found every piece embedded
