"""The stream schemas (core/records.py): what a writer writes, its reader reads back, field for field."""

from __future__ import annotations

import pytest

from core.records import BadRecord, FeedbackRecord, RequestRecord, StoredAnswer
from core.wire import AnswerResponse

RESPONSE = AnswerResponse(id="r1", answer="B", text="b.", adapter_version=4, confidence=0.75, latency_ms=9.0)


def request_record(**changes: object) -> RequestRecord:
    values: dict[str, object] = {
        "image_key": "ttrv:image:abc",
        "mime": "image/jpeg",
        "question": "Which animal?",
        "options": ["cat", "dog"],
        "stream": "night-cameras",
        "samples": 4,
        "ts": 1700000000.123,
        **changes,
    }
    return RequestRecord.of_answer(RESPONSE, **values)  # type: ignore[arg-type]


def test_request_record_round_trips_every_field_as_text_and_as_bytes() -> None:
    record = request_record()
    fields = record.fields()
    assert all(isinstance(v, str) for v in fields.values())
    as_bytes = {k.encode(): v.encode() for k, v in fields.items()}
    for raw in (fields, as_bytes):
        parsed = RequestRecord.parse("5-1", raw)
        assert parsed.entry_id == "5-1"
        assert parsed == RequestRecord(**{**record.__dict__, "entry_id": "5-1"})
    assert (record.served_answer, record.text, record.confidence) == ("B", "b.", 0.75)


@pytest.mark.parametrize("options", [None, []])
def test_no_options_are_written_empty_and_read_as_none(options: list[str] | None) -> None:
    fields = request_record(options=options).fields()
    assert fields["options"] == ""
    assert RequestRecord.parse("1-0", fields).options is None


def test_an_entry_from_before_the_mime_type_was_kept_reads_as_png() -> None:
    fields = request_record().fields()
    for name in ("mime", "text", "samples", "confidence"):
        del fields[name]
    old = RequestRecord.parse("1-0", fields)
    assert (old.mime, old.text, old.samples, old.confidence) == ("image/png", "", 1, None)


def test_a_bad_confidence_is_a_bad_record() -> None:
    with pytest.raises(BadRecord, match="confidence 'high' is not a number"):
        RequestRecord.parse("1-0", {**request_record().fields(), "confidence": "high"})


def test_stored_answer_gives_the_reply_back_without_its_extras() -> None:
    stored = StoredAnswer(**RESPONSE.model_dump(), image="ttrv:image:abc", mime="image/jpeg", question="q")
    again = StoredAnswer.model_validate_json(stored.model_dump_json())
    assert again.response() == RESPONSE
    assert again.mime == "image/jpeg"


def test_feedback_record_round_trips_and_keeps_what_asking_again_needs() -> None:
    stored = StoredAnswer(
        **RESPONSE.model_dump(),
        image="ttrv:image:abc",
        mime="image/jpeg",
        question="Which?",
        options=["a", "b"],
    )
    feedback = FeedbackRecord.of_answer(stored, label="dog", correct=True, ts=1700000001.5)
    assert FeedbackRecord.parse("2-0", feedback.fields()) == feedback
    assert (feedback.image_key, feedback.mime, feedback.options) == (
        "ttrv:image:abc",
        "image/jpeg",
        ["a", "b"],
    )


def test_feedback_written_before_images_were_kept_still_counts_but_cannot_be_asked_again() -> None:
    old = {"id": "r9", "label": "7", "answer": "7", "adapter_version": "2", "correct": "1", "ts": "1.0"}
    parsed = FeedbackRecord.parse("3-0", old)
    assert (parsed.adapter_version, parsed.correct, parsed.image_key) == (2, True, "")
