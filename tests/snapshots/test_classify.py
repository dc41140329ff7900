"""The acceptable/worrying rules on fixed texts, with the similarity given (no model) or,
for the audit's false alarms, measured with the local model."""

from __future__ import annotations

import pytest

from canarytrace.snapshots.classify import classify, is_refusal, length_ratio, numbers
from canarytrace.snapshots.record import Checks, LLMOutput, Record
from canarytrace.snapshots.similarity import Similarity

OLD = "Refunds are possible within 30 days of purchase with the receipt."


@pytest.mark.parametrize(
    ("new", "similarity", "checks", "verdict", "kind"),
    [
        (OLD, 1.0, Checks(), "acceptable", "unchanged"),
        (
            "Refunds are possible\nwithin 30 days of purchase, with the receipt!",
            0.99,
            Checks(),
            "acceptable",
            "reformatted",
        ),
        (
            "- Refunds: within 30 days of purchase\n- Bring the receipt",
            0.9,
            Checks(),
            "acceptable",
            "reformatted",
        ),
        ("Refunds within 30 days, with receipt.", 0.86, Checks(), "acceptable", "more concise"),
        (
            "You can get a refund for 30 days after buying if you have the receipt.",
            0.89,
            Checks(),
            "acceptable",
            "rephrased",
        ),
        (
            "You can get a refund for 30 days after buying if you have the receipt.",
            0.89,
            Checks(threshold=0.95),
            "worrying",
            "meaning changed",
        ),
        (
            "Refunds are possible within 14 days of purchase with the receipt.",
            0.95,
            Checks(),
            "worrying",
            "required information lost",
        ),
        (
            "Refunds are possible within 30 days of purchase.",
            0.9,
            Checks(must_contain=("receipt",)),
            "worrying",
            "required information lost",
        ),
        (
            "Refunds within 30 days, with the receipt, or store credit.",
            0.9,
            Checks(must_not_contain=("store credit",)),
            "worrying",
            "forbidden content",
        ),
        ("I'm sorry, but I can't help with refunds.", 0.3, Checks(), "worrying", "now a refusal"),
        (" ".join([OLD] * 3), 0.9, Checks(), "worrying", "far longer"),
        (" ".join([OLD] * 3), 0.9, Checks(max_length_ratio=4), "acceptable", "rephrased"),
    ],
)
def test_classify(new: str, similarity: float, checks: Checks, verdict: str, kind: str) -> None:
    result = classify(OLD, new, similarity=similarity, threshold=0.8, checks=checks)
    assert (result.verdict, result.kind) == (verdict, kind), result.reason
    assert result.similarity == similarity


def test_json_must_parse_and_keep_its_keys() -> None:
    old = '{"name": "Ada", "role": "admin"}'
    checks = Checks(json_keys=("name", "role"))
    same = classify(
        old,
        '{\n  "role": "admin",\n  "name": "Ada"\n}',
        similarity=0.97,
        threshold=0.8,
        checks=checks,
    )
    assert (same.verdict, same.kind) == ("acceptable", "reformatted")
    lost = classify(old, '{"name": "Ada"}', similarity=0.9, threshold=0.8, checks=checks)
    assert lost.kind == "required information lost" and "'role'" in lost.reason
    broken = classify(old, "name: Ada, role: admin", similarity=0.9, threshold=0.8)
    assert broken.kind == "now fails to parse"  # old was JSON, so new must be too


def test_every_problem_is_listed_most_serious_first() -> None:
    result = classify(OLD, "I'm sorry, I cannot help with that.", similarity=0.2, threshold=0.8)
    assert result.kind == "now a refusal"
    assert result.failed_checks == (
        "the new output refuses to answer",
        "numbers gone or changed: 30",
        "similarity 0.200 < 0.80",
    )


@pytest.mark.parametrize(
    ("text", "refusal"),
    [
        ("I'm sorry, but I can't help with that request.", True),
        ("I am unable to provide that information.", True),
        ("I cannot assist with this.", True),
        ("As an AI language model, I don't have opinions.", True),
        ("Sorry for the wait: the refund is on its way.", False),
        ("I can't wait to help you plan the trip!", False),
    ],
)
def test_refusals(text: str, refusal: bool) -> None:
    assert is_refusal(text) is refusal


def test_a_numbered_list_turned_into_bullets_loses_no_numbers(semantic: Similarity) -> None:
    old = "1. Open Settings.\n2. Click Billing.\n3. Choose Refund."
    new = "- Open Settings.\n- Click Billing.\n- Choose Refund."
    result = classify(old, new, similarity=semantic(old, new), threshold=0.8)
    assert (result.verdict, result.kind) == ("acceptable", "reformatted"), result.reason
    assert numbers("Released in\n2024. Sales doubled.\nThe answer:\n42.\n  10) 1.5 litres") == {
        "2024",
        "42",
        "1.5",
    }  # a year or a lone number opening a line is a fact; "10) " numbers an item


def test_an_apology_about_what_the_user_cannot_do_is_no_refusal(semantic: Similarity) -> None:
    old = "Refunds are not possible after 30 days."
    new = "I'm sorry, but you can't get a refund after 30 days."
    result = classify(old, new, similarity=semantic(old, new), threshold=0.8)
    assert (result.verdict, result.kind) == ("acceptable", "rephrased"), result.reason
    assert not is_refusal("I'm afraid you won't be able to change the date.")
    assert is_refusal("I'm sorry, but I'm unable to share that.")
    assert is_refusal("I\u2019m afraid I can\u2019t give medical advice.")


def test_numbers_and_length() -> None:
    assert numbers("At 14:30 on 3 March, 1,200 checkouts (v2.4) failed") == {
        "14:30",
        "3",
        "1,200",
        "2.4",
    }
    assert length_ratio("one two", "one two three four") == 2.0


@pytest.mark.parametrize(
    "record",
    [
        Record("The capital is Paris."),
        Record("a\n---\nb", model="gpt-4o-2024-11-20", pinned="2026-06-01 (why)"),
        Record("---\nstarts with a rule", checks=Checks(must_contain=("rule",), threshold=0.9)),
        Record("", model="m-20240101"),
    ],
)
def test_records_survive_a_round_trip(record: Record) -> None:
    assert Record.parse(record.render()) == record


def test_text_with_a_rule_but_no_header_stays_text() -> None:
    text = "Intro\n---\nBody"
    assert Record.parse(text) == Record(text)


def test_bad_checks_header_names_the_snapshot() -> None:
    with pytest.raises(ValueError, match=r"tests/x\.llm::t: unknown check\(s\) \['must'\]"):
        Record.parse('checks: {"must": 1}\n---\ntext', where="tests/x.llm::t")


def test_llm_output_checks_and_type() -> None:
    assert LLMOutput("x", must_contain=["a"]).checks == Checks(must_contain=("a",))
    with pytest.raises(TypeError, match="must be str"):
        LLMOutput({"not": "text"})  # type: ignore[arg-type]


def test_text_where_an_empty_snapshot_was_is_far_longer_in_words_not_infx() -> None:
    verdict = classify("", "Now there is an answer.", similarity=0.0, threshold=0.8)
    assert verdict.kind == "meaning changed"
    assert "text where the snapshot was empty" in verdict.reason and "inf" not in verdict.reason
