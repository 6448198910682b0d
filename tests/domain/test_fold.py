"""The fold (events → snapshot) and the store's terminal transitions, on hand-built logs."""

from __future__ import annotations

import copy

import orjson
import pytest

from tether.domain import events as ev
from tether.domain.fold import Fold, FoldError, fold_all, terminal_transition
from tether.domain.response import ResponseStatus, build_response, usage
from tether.domain.types import JSONObject

ITEM = "msg_0123"


def created_snapshot() -> JSONObject:
    return build_response(
        response_id="resp_0123",
        model="scripted",
        created_at=1_700_000_000,
        background=False,
        store=True,
        settings={},
    )


def with_status(snapshot: JSONObject, status: str, **fields: object) -> JSONObject:
    result = copy.deepcopy(snapshot)
    result["status"] = status
    result.update(fields)
    return result


def opening(pieces: list[str]) -> list[JSONObject]:
    """created, in_progress, item and part added, then one delta per piece (seq 0…)."""
    snapshot = created_snapshot()
    events = [
        ev.lifecycle(ev.CREATED, copy.deepcopy(snapshot), 0),
        ev.lifecycle(ev.IN_PROGRESS, with_status(snapshot, "in_progress"), 1),
        ev.output_item_added(0, ev.message_item(ITEM, "in_progress", []), 2),
        ev.content_part(ev.CONTENT_PART_ADDED, ITEM, 0, 0, ev.output_text_part(), 3),
    ]
    for piece in pieces:
        events.append(ev.text_delta(ITEM, 0, 0, piece, len(events)))
    return events


def final_snapshot(text: str) -> JSONObject:
    item = ev.message_item(ITEM, "completed", [ev.output_text_part(text)])
    return with_status(
        created_snapshot(),
        "completed",
        completed_at=1_700_000_005,
        output=[item],
        usage=usage(3, 3),
    )


def whole_log(pieces: list[str]) -> list[JSONObject]:
    events = opening(pieces)
    text = "".join(pieces)
    item = ev.message_item(ITEM, "completed", [ev.output_text_part(text)])
    events.append(ev.text_done(ITEM, 0, 0, text, len(events)))
    part = ev.output_text_part(text)
    events.append(ev.content_part(ev.CONTENT_PART_DONE, ITEM, 0, 0, part, len(events)))
    events.append(ev.output_item_done(0, item, len(events)))
    events.append(ev.lifecycle(ev.COMPLETED, final_snapshot(text), len(events)))
    return events


def roundtrip(events: list[JSONObject]) -> list[JSONObject]:
    """The events as a reader of the log gets them: decoded from their stored bytes."""
    return [ev.encode(event).payload() for event in events]


# --- folding a log ----------------------------------------------------------------


def test_fold_whole_log_gives_final_snapshot() -> None:
    log = whole_log(["Hel", "lo", " world"])

    before_terminal = fold_all(roundtrip(log[:-1]))
    final = fold_all(roundtrip(log))

    assert final == final_snapshot("Hello world")
    assert before_terminal["status"] == "in_progress"
    assert before_terminal["output"] == final["output"]


def test_fold_in_progress_log_has_partial_output() -> None:
    fold = Fold()
    for event in roundtrip(opening(["par", "tial"])):
        fold.apply(event)

    snapshot = fold.snapshot()

    assert fold.last_seq == 5
    assert fold.status is ResponseStatus.IN_PROGRESS
    assert snapshot["output"] == [
        ev.message_item(ITEM, "in_progress", [ev.output_text_part("partial")])
    ]


def test_fold_joins_deltas_lazily_but_snapshot_has_full_text() -> None:
    fold = Fold()
    events = roundtrip(opening(["a", "b", "c"]))
    for event in events:
        fold.apply(event)
    part = events[3]["part"]  # the fold keeps this dict in its snapshot

    assert part["text"] == ""  # apply only recorded the pieces
    assert fold.snapshot()["output"][0]["content"][0]["text"] == "abc"
    assert part["text"] == "abc"


def test_fold_snapshot_between_deltas_keeps_all_text() -> None:
    fold = Fold()
    events = roundtrip(opening(["a", "b"]))
    for event in events:
        fold.apply(event)
    texts = [fold.snapshot()["output"][0]["content"][0]["text"]]
    for piece in ("c", "d", "e"):
        fold.apply(ev.text_delta(ITEM, 0, 0, piece, fold.last_seq + 1))
        if piece != "d":
            texts.append(fold.snapshot()["output"][0]["content"][0]["text"])

    assert texts == ["ab", "abc", "abcde"]


@pytest.mark.parametrize(
    "split",
    [
        2,
        pytest.param(4, id="4-part-open"),
        pytest.param(5, id="5-mid-text"),
        8,
    ],
)
def test_fold_resumed_from_a_stored_snapshot_folds_the_rest(split: int) -> None:
    log = whole_log(["x", "y"])  # 0 created … 4/5 deltas … 9 completed
    head = Fold()
    for event in roundtrip(log[:split]):  # the fold keeps (and grows) the dicts it applies
        head.apply(event)
    resumed = Fold(orjson.loads(orjson.dumps(head.snapshot())), head.last_seq)

    for event in roundtrip(log[split:]):
        resumed.apply(event)

    assert resumed.snapshot() == fold_all(roundtrip(log))


def test_fold_ignores_error_and_unknown_events() -> None:
    events = roundtrip(opening(["a"]))
    events.append(ev.error("server_error", "boom", len(events)))
    events.append({"type": "response.some_future_event", "sequence_number": len(events)})

    fold = Fold()
    for event in events:
        fold.apply(event)

    assert fold.last_seq == len(events) - 1
    assert fold.snapshot()["output"][0]["content"][0]["text"] == "a"


# --- what does not fit ------------------------------------------------------------


@pytest.mark.parametrize(
    "seqs",
    [[1], [0, 2], [0, 1, 1], [0, 1, 0]],
    ids=["not-from-zero", "gap", "duplicate", "backwards"],
)
def test_fold_rejects_gaps_and_repeats(seqs: list[int]) -> None:
    events = roundtrip(opening(["a", "b"]))
    fold = Fold()

    with pytest.raises(FoldError, match="sequence_number"):
        for seq in seqs:
            fold.apply({**events[seq], "sequence_number": seq})

    assert fold.last_seq == len(seqs) - 2  # the misfit was not applied


def test_fold_rejects_log_not_starting_with_a_snapshot() -> None:
    fold = Fold()

    with pytest.raises(FoldError):
        fold.apply(ev.output_item_added(0, ev.message_item(ITEM, "in_progress", []), 0))


def test_fold_rejects_item_added_at_wrong_index() -> None:
    events = roundtrip(opening([]))[:2]
    fold = Fold()
    for event in events:
        fold.apply(event)

    with pytest.raises(FoldError):
        fold.apply(ev.output_item_added(1, ev.message_item(ITEM, "in_progress", []), 2))


@pytest.mark.parametrize(
    "misfit", ["delta-after-part-done", "delta-unknown-part", "part-unknown-item"]
)
def test_fold_rejects_events_for_closed_or_unknown_items(misfit: str) -> None:
    events = roundtrip(opening(["a"]))
    seq = len(events)
    if misfit == "delta-after-part-done":
        events.append(
            ev.content_part(ev.CONTENT_PART_DONE, ITEM, 0, 0, ev.output_text_part("a"), seq)
        )
        events.append(ev.text_delta(ITEM, 0, 0, "late", seq + 1))
    elif misfit == "delta-unknown-part":
        events.append(ev.text_delta(ITEM, 0, 7, "x", seq))
    else:
        events.append(
            ev.content_part(ev.CONTENT_PART_ADDED, ITEM, 3, 0, ev.output_text_part(), seq)
        )
    fold = Fold()
    for event in events[:-1]:
        fold.apply(event)

    with pytest.raises(FoldError):
        fold.apply(events[-1])


# --- terminal transitions -----------------------------------------------------------


def in_progress_fold() -> Fold:
    fold = Fold()
    for event in roundtrip(opening(["par", "tial"])):
        fold.apply(event)
    return fold


def test_terminal_transition_cancelled_appends_cancelled_with_snapshot() -> None:
    fold = in_progress_fold()
    stored = orjson.loads(orjson.dumps(fold.snapshot()))
    kept = copy.deepcopy(stored)

    events, final = terminal_transition(stored, fold.last_seq, ResponseStatus.CANCELLED)

    assert events == [ev.lifecycle(ev.CANCELLED, final, fold.last_seq + 1)]
    assert final == {**kept, "status": "cancelled", "completed_at": None, "usage": None}
    assert final["output"][0]["status"] == "in_progress"  # partial output kept as it was
    assert final["output"][0]["content"][0]["text"] == "partial"
    assert stored == kept  # the stored snapshot itself is not changed


def test_terminal_transition_failed_appends_error_and_failed() -> None:
    fold = in_progress_fold()
    stored = orjson.loads(orjson.dumps(fold.snapshot()))
    error = {"code": "server_error", "message": "The worker stopped."}

    events, final = terminal_transition(stored, fold.last_seq, ResponseStatus.FAILED, error)

    seq = fold.last_seq + 1
    assert events == [
        {
            "type": "error",
            "sequence_number": seq,
            "code": "server_error",
            "message": "The worker stopped.",
            "param": None,
            "error": {
                "type": "server_error",
                "code": "server_error",
                "message": "The worker stopped.",
                "param": None,
            },
        },
        ev.lifecycle(ev.FAILED, final, seq + 1),
    ]
    assert final["status"] == "failed"
    assert final["error"] == error
    assert (final["usage"], final["completed_at"]) == (None, None)
    assert final["output"][0]["content"][0]["text"] == "partial"


def test_terminal_transition_events_fold_onto_the_stored_snapshot() -> None:
    fold = in_progress_fold()
    stored = orjson.loads(orjson.dumps(fold.snapshot()))
    error = {"code": "rate_limit_exceeded", "message": "slow down"}

    events, final = terminal_transition(stored, fold.last_seq, ResponseStatus.FAILED, error)
    for event in roundtrip(events):
        fold.apply(event)

    assert fold.snapshot() == final
    assert fold.status is ResponseStatus.FAILED
    assert events[0]["error"]["type"] == "rate_limit_error"


def test_terminal_transition_failed_needs_an_error() -> None:
    with pytest.raises(ValueError, match="error"):
        terminal_transition(created_snapshot(), 0, ResponseStatus.FAILED)


@pytest.mark.parametrize(
    "status", [ResponseStatus.COMPLETED, ResponseStatus.INCOMPLETE, ResponseStatus.IN_PROGRESS]
)
def test_terminal_transition_rejects_statuses_the_store_does_not_set(
    status: ResponseStatus,
) -> None:
    with pytest.raises(ValueError):
        terminal_transition(created_snapshot(), 0, status)
