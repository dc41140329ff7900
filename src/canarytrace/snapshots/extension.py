"""The syrupy extension behind the `llm_snapshot` fixture: match LLM output by meaning.

Byte-equal snapshots of LLM output fail on every run, so this extension keeps syrupy's
storage (amber files, `*.llm` next to the tests, so a test module may also use plain
`snapshot`) and changes three roles only:

- `serialize` stores the output with a header naming the model that wrote it, its pin
  and the assertion's checks (`record.py`);
- `matches` accepts a new output when `classify` calls the change acceptable: embedding
  similarity at or above the threshold and every check passed;
- `diff_lines` prints old and new side by side with the similarity, failed checks and
  the classification.

Under `--snapshot-update` `matches` is exact, so every changed output is written and the
review (`canarytrace snapshots review`) sees all of them, labelled; otherwise a candidate
model's rephrasings would keep the old model's text and header.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

from syrupy.extensions.amber import AmberSnapshotExtension

from canarytrace.snapshots.classify import Classification, against_own_checks, classify
from canarytrace.snapshots.display import side_by_side
from canarytrace.snapshots.record import LLMOutput, Record
from canarytrace.snapshots.similarity import shared_similarity


class LLMSnapshotExtension(AmberSnapshotExtension):
    """Amber storage, meaning-based comparison; configure with `bound(...)`."""

    file_extension = "llm"
    model: ClassVar[str | None] = None
    pinned: ClassVar[str | None] = None
    embedder: ClassVar[str | None] = None
    exact: ClassVar[bool] = False

    @classmethod
    def bound(
        cls,
        *,
        model: str | None = None,
        pinned: str | None = None,
        embedder: str | None = None,
        exact: bool = False,
    ) -> type[LLMSnapshotExtension]:
        """A subclass that writes `model`/`pinned` into headers and compares with `embedder`.

        syrupy instantiates extensions without arguments, hence a class per configuration.
        """
        attrs = {"model": model, "pinned": pinned, "embedder": embedder, "exact": exact}
        return type(cls.__name__, (cls,), attrs)

    def serialize(self, data: Any, **kwargs: Any) -> str:
        """The stored form of an output: a `str` or an `LLMOutput` carrying checks."""
        if isinstance(data, str):
            data = LLMOutput(data)
        if not isinstance(data, LLMOutput):
            raise TypeError(
                f"llm_snapshot compares model output text: got {type(data).__name__}; "
                "pass the text, or LLMOutput(text, ...) to add checks"
            )
        # Line endings as syrupy's own serializer has them: amber files are written
        # split on "\n" and read in universal-newline mode, so a "\r" stored as is would
        # read back as a line break (and the text after it as amber markers).
        text = data.text.replace("\r\n", "\n").replace("\r", "\n")
        return Record(text, self.model, self.pinned, data.checks).render()

    def matches(self, *, serialized_data: Any, snapshot_data: Any) -> bool:
        """Exact under --snapshot-update; otherwise acceptable by `classify`. An output
        equal to its snapshot must still pass its own checks (the review flags one
        recorded under --snapshot-update)."""
        if serialized_data == snapshot_data:
            if self.exact:
                return True
            new = Record.parse(str(serialized_data), where="new output")
            return against_own_checks(new.text, new.checks).acceptable
        if self.exact:
            return False
        return self._judge(str(serialized_data), str(snapshot_data))[2].acceptable

    def diff_lines(self, serialized_data: Any, snapshot_data: Any) -> Iterator[str]:
        """Old and new side by side, then similarity, failed checks and classification;
        for a missing snapshot (syrupy passes ""), how to record it."""
        if not snapshot_data:  # a stored record always has its header's "---" line
            yield "  record it with pytest --snapshot-update, then review the change"
            return
        old, new, verdict = self._judge(str(serialized_data), str(snapshot_data))
        label = shared_similarity(self.embedder).label
        yield f"LLM output changed: {verdict.verdict.upper()} ({verdict.kind})"
        yield f"  similarity {verdict.similarity:.3f} (threshold {verdict.threshold:.2f}; {label})"
        for failed in verdict.failed_checks:
            yield f"  failed: {failed}"
        if verdict.acceptable:
            yield f"  {verdict.reason}"
        yield from side_by_side(
            f"old ({old.model or 'model not recorded'})",
            old.text,
            f"new ({new.model or 'model not recorded'})",
            new.text,
        )

    def _judge(self, serialized: str, stored: str) -> tuple[Record, Record, Classification]:
        new = Record.parse(serialized, where="new output")
        old = Record.parse(stored, where="stored snapshot")
        similarity = shared_similarity(self.embedder)
        score = similarity(old.text, new.text)
        verdict = classify(
            old.text,
            new.text,
            similarity=score,
            threshold=similarity.default_threshold,
            checks=new.checks,
        )
        return old, new, verdict
