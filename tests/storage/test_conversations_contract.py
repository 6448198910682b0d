"""The conversation contract (`ConversationStore` and responses that belong to a
conversation, `tether/storage/base.py`), run against every backend of
`tests.support.stores.OPENERS`.

Sections: helpers · create, get, update, delete · items · responses in a
conversation.
"""

from __future__ import annotations

import time

import orjson
import pytest

from tests.support.stores import CreateResponse, Script, new_response, read_all, user_items
from tether.domain import events as ev
from tether.domain.ids import new_id
from tether.domain.response import ResponseStatus
from tether.domain.types import JSONObject
from tether.errors import AppendConflictError, InvalidRequestError, NotFoundError
from tether.storage.base import Storage, StoredConversation

# --- helpers --------------------------------------------------------------------


async def conversation(
    storage: Storage, *texts: str, metadata: dict[str, str] | None = None
) -> StoredConversation:
    """A new conversation holding one user message per text."""
    return await storage.conversations.create(
        new_id("conv"), metadata or {}, user_items(*texts), int(time.time())
    )


async def all_items(storage: Storage, conversation_id: str) -> list[JSONObject]:
    page = await storage.conversations.list_items(
        conversation_id, after=None, limit=1000, order="asc"
    )
    return page.items


async def texts(storage: Storage, conversation_id: str) -> list[str]:
    """The text of each item of a conversation, oldest first."""
    return [item["content"][0]["text"] for item in await all_items(storage, conversation_id)]


def output_of(script: Script) -> list[JSONObject]:
    output: list[JSONObject] = orjson.loads(script.snapshot())["output"]
    return output


async def finished(storage: Storage, script: Script, status: ResponseStatus) -> None:
    """Run a created response to its end: start, two pieces of text, `status`."""
    await script.append(storage, script.start() + script.text("an", "swer"))
    await script.append(storage, script.complete(status))


# --- create, get, update, delete ------------------------------------------------


async def test_conversation_create_then_get_returns_it(storage: Storage) -> None:
    created_at = int(time.time())
    items = user_items("one", "two")

    made = await storage.conversations.create("conv_1", {"topic": "demo"}, items, created_at)

    assert made == StoredConversation("conv_1", created_at, {"topic": "demo"})
    assert await storage.conversations.get("conv_1") == made
    assert await all_items(storage, "conv_1") == items


async def test_conversation_create_without_items_has_an_empty_list(storage: Storage) -> None:
    made = await conversation(storage)

    page = await storage.conversations.list_items(made.id, after=None, limit=20, order="desc")

    assert page.items == [] and not page.has_more
    assert made.metadata == {}


async def test_conversation_get_unknown_is_none(storage: Storage) -> None:
    assert await storage.conversations.get("conv_unknown") is None


async def test_conversation_update_metadata_replaces_all_of_it(storage: Storage) -> None:
    made = await conversation(storage, "hi", metadata={"a": "1", "b": "2"})

    updated = await storage.conversations.update_metadata(made.id, {"c": "3"})

    assert updated == StoredConversation(made.id, made.created_at, {"c": "3"})
    assert await storage.conversations.get(made.id) == updated
    assert await texts(storage, made.id) == ["hi"]


async def test_conversation_update_metadata_of_unknown_is_none(storage: Storage) -> None:
    assert await storage.conversations.update_metadata("conv_unknown", {"a": "1"}) is None
    assert await storage.conversations.get("conv_unknown") is None


async def test_conversation_delete_removes_it_and_its_items(storage: Storage) -> None:
    made = await conversation(storage, "one", "two")
    item_id = (await all_items(storage, made.id))[0]["id"]

    assert await storage.conversations.delete(made.id)

    assert await storage.conversations.get(made.id) is None
    with pytest.raises(NotFoundError):
        await storage.conversations.list_items(made.id, after=None, limit=20, order="asc")
    with pytest.raises(NotFoundError):
        await storage.conversations.get_item(made.id, item_id)
    with pytest.raises(NotFoundError):
        await storage.conversations.add_items(made.id, user_items("three"))
    assert not await storage.conversations.delete(made.id)


async def test_conversation_delete_leaves_other_conversations(storage: Storage) -> None:
    gone, kept = await conversation(storage, "gone"), await conversation(storage, "kept")

    await storage.conversations.delete(gone.id)

    assert await storage.conversations.get(kept.id) == kept
    assert await texts(storage, kept.id) == ["kept"]


async def test_conversation_unknown_is_not_found_with_its_id_in_the_message(
    storage: Storage,
) -> None:
    with pytest.raises(NotFoundError) as caught:
        await storage.conversations.add_items("conv_nope", user_items("x"))

    assert caught.value.message == "Conversation with id 'conv_nope' not found."


# --- items ----------------------------------------------------------------------


async def test_add_items_appends_in_order_and_returns_them(storage: Storage) -> None:
    made = await conversation(storage, "one")
    items = user_items("two", "three")

    added = await storage.conversations.add_items(made.id, items)

    assert added == items
    assert await texts(storage, made.id) == ["one", "two", "three"]


async def test_add_items_stores_a_copy(storage: Storage) -> None:
    made = await conversation(storage)
    items = user_items("two")
    await storage.conversations.add_items(made.id, items)

    items[0]["content"][0]["text"] = "changed later"

    assert await texts(storage, made.id) == ["two"]


async def test_add_items_to_unknown_conversation_is_not_found(storage: Storage) -> None:
    with pytest.raises(NotFoundError):
        await storage.conversations.add_items("conv_unknown", user_items("x"))


async def test_create_with_a_repeated_item_id_is_invalid_and_writes_nothing(
    storage: Storage,
) -> None:
    [item] = user_items("twice")

    with pytest.raises(InvalidRequestError) as caught:
        await storage.conversations.create("conv_1", {}, [item, item], int(time.time()))

    assert caught.value.param == "items"
    assert item["id"] in caught.value.message
    assert await storage.conversations.get("conv_1") is None


async def test_add_items_with_an_id_already_there_is_invalid_and_adds_nothing(
    storage: Storage,
) -> None:
    made = await conversation(storage, "one")
    [held] = await all_items(storage, made.id)
    [fresh] = user_items("fresh")

    for items in ([fresh, held], [fresh, fresh]):
        with pytest.raises(InvalidRequestError) as caught:
            await storage.conversations.add_items(made.id, items)
        assert caught.value.param == "items"

    assert await texts(storage, made.id) == ["one"]


async def test_items_of_conversations_are_kept_apart(storage: Storage) -> None:
    first, second = await conversation(storage, "a1"), await conversation(storage, "b1")

    await storage.conversations.add_items(first.id, user_items("a2"))
    await storage.conversations.add_items(second.id, user_items("b2"))

    assert await texts(storage, first.id) == ["a1", "a2"]
    assert await texts(storage, second.id) == ["b1", "b2"]


async def test_list_items_pages_both_ways(storage: Storage) -> None:
    made = await conversation(storage, "0", "1", "2", "3", "4")
    ids = [item["id"] for item in await all_items(storage, made.id)]
    page = storage.conversations.list_items

    asc = [
        await page(made.id, after=None, limit=2, order="asc"),
        await page(made.id, after=ids[1], limit=2, order="asc"),
        await page(made.id, after=ids[3], limit=2, order="asc"),
    ]
    desc = [
        await page(made.id, after=None, limit=3, order="desc"),
        await page(made.id, after=ids[2], limit=3, order="desc"),
    ]

    assert [[i["id"] for i in p.items] for p in asc] == [ids[:2], ids[2:4], ids[4:]]
    assert [p.has_more for p in asc] == [True, True, False]
    assert [[i["id"] for i in p.items] for p in desc] == [ids[:1:-1], ids[1::-1]]
    assert [p.has_more for p in desc] == [True, False]


async def test_list_items_has_more_is_false_on_exact_fit(storage: Storage) -> None:
    made = await conversation(storage, "0", "1", "2")
    ids = [item["id"] for item in await all_items(storage, made.id)]

    whole = await storage.conversations.list_items(made.id, after=None, limit=3, order="desc")
    past_end = await storage.conversations.list_items(made.id, after=ids[2], limit=3, order="asc")

    assert [i["id"] for i in whole.items] == ids[::-1] and not whole.has_more
    assert past_end.items == [] and not past_end.has_more


async def test_list_items_unknown_after_is_invalid(storage: Storage) -> None:
    made, other = await conversation(storage, "mine"), await conversation(storage, "theirs")
    [foreign] = await all_items(storage, other.id)

    for after in ("msg_nope", foreign["id"]):  # an item of another conversation is unknown here
        with pytest.raises(InvalidRequestError) as caught:
            await storage.conversations.list_items(made.id, after=after, limit=5, order="asc")
        assert caught.value.param == "after"


async def test_list_items_unknown_conversation_is_not_found(storage: Storage) -> None:
    with pytest.raises(NotFoundError):
        await storage.conversations.list_items("conv_unknown", after=None, limit=5, order="asc")


async def test_get_item_returns_it_or_none(storage: Storage) -> None:
    made = await conversation(storage, "one", "two")
    items = await all_items(storage, made.id)

    assert await storage.conversations.get_item(made.id, items[1]["id"]) == items[1]
    assert await storage.conversations.get_item(made.id, "msg_nope") is None
    with pytest.raises(NotFoundError):
        await storage.conversations.get_item("conv_unknown", items[1]["id"])


async def test_delete_item_removes_only_it_and_returns_the_conversation(
    storage: Storage,
) -> None:
    made = await conversation(storage, "one", "two", "three", metadata={"k": "v"})
    items = await all_items(storage, made.id)

    assert await storage.conversations.delete_item(made.id, items[1]["id"]) == made

    assert await texts(storage, made.id) == ["one", "three"]
    assert await storage.conversations.get_item(made.id, items[1]["id"]) is None
    assert await storage.conversations.delete_item(made.id, items[1]["id"]) is None
    with pytest.raises(NotFoundError):
        await storage.conversations.delete_item("conv_unknown", items[0]["id"])


async def test_items_added_after_deleting_the_last_one_go_last(storage: Storage) -> None:
    made = await conversation(storage, "one", "two")
    last = (await all_items(storage, made.id))[-1]

    await storage.conversations.delete_item(made.id, last["id"])
    await storage.conversations.add_items(made.id, user_items("three"))

    assert await texts(storage, made.id) == ["one", "three"]


# --- responses in a conversation ------------------------------------------------


async def test_create_response_appends_its_new_input_to_the_conversation(
    storage: Storage, create: CreateResponse
) -> None:
    made = await conversation(storage, "earlier")
    earlier = await all_items(storage, made.id)
    new_input = user_items("now")

    new = await create(
        items=earlier + new_input, conversation_id=made.id, conversation_items=new_input
    )

    assert await all_items(storage, made.id) == earlier + new_input
    page = await storage.responses.input_items(new.id, after=None, limit=10, order="asc")
    assert page.items == earlier + new_input


async def test_create_response_in_unknown_conversation_raises_and_writes_nothing(
    storage: Storage,
) -> None:
    deleted = await conversation(storage)
    await storage.conversations.delete(deleted.id)

    for conversation_id in ("conv_never", deleted.id):
        new = new_response(conversation_id=conversation_id)
        with pytest.raises(NotFoundError) as caught:
            await storage.responses.create(new)
        assert caught.value.param == "conversation"
        assert conversation_id in caught.value.message
        assert await storage.responses.get(new.id) is None
        with pytest.raises(NotFoundError):
            await storage.events.read_after(new.id, -1, 10)

    assert await storage.jobs.claim("w1", 10, 30.0) == []
    assert await storage.conversations.get(deleted.id) is None


async def test_create_response_with_input_the_conversation_holds_is_invalid(
    storage: Storage,
) -> None:
    made = await conversation(storage, "earlier")
    earlier = await all_items(storage, made.id)
    new = new_response(items=earlier, conversation_id=made.id, conversation_items=earlier)

    with pytest.raises(InvalidRequestError) as caught:
        await storage.responses.create(new)

    assert caught.value.param == "input"
    assert await storage.responses.get(new.id) is None
    assert await all_items(storage, made.id) == earlier


@pytest.mark.parametrize("status", [ResponseStatus.COMPLETED, ResponseStatus.INCOMPLETE])
async def test_finished_response_appends_its_output_to_the_conversation(
    storage: Storage, create: CreateResponse, status: ResponseStatus
) -> None:
    made = await conversation(storage, "earlier")
    new = await create(conversation_id=made.id, items=user_items("question"))
    script = Script(new)

    await script.append(storage, script.start() + script.text("an", "swer"))
    assert await texts(storage, made.id) == ["earlier", "question"]  # no output until the end
    await script.append(storage, script.complete(status))

    items = await all_items(storage, made.id)
    assert items[2:] == output_of(script)
    assert [item["content"][0]["text"] for item in items] == ["earlier", "question", "answer"]
    stored = await storage.responses.get(new.id)
    assert stored is not None and stored.status is status


async def test_finished_response_without_a_new_snapshot_appends_the_folded_output(
    storage: Storage, create: CreateResponse
) -> None:
    made = await conversation(storage)
    script = Script(await create(conversation_id=made.id))
    await script.append(storage, script.start() + script.text("folded"))

    events = script.complete()
    await storage.events.append(script.id, events, None, ResponseStatus.COMPLETED)

    assert (await all_items(storage, made.id))[1:] == output_of(script)
    assert (await texts(storage, made.id))[1:] == ["folded"]


async def test_finished_response_leaves_out_output_the_conversation_holds(
    storage: Storage, create: CreateResponse
) -> None:
    made = await conversation(storage)
    script = Script(await create(conversation_id=made.id, items=user_items("question")))
    await script.append(storage, script.start() + script.text("answer"))
    [output] = output_of(script)
    by_hand = {**output, "content": [{"type": "output_text", "text": "by hand", "annotations": []}]}
    await storage.conversations.add_items(made.id, [by_hand])

    await script.append(storage, script.complete())

    assert [item["id"] for item in await all_items(storage, made.id)][1:] == [script.item_id]
    assert await texts(storage, made.id) == ["question", "by hand"]


async def test_failed_response_appends_no_output(storage: Storage, create: CreateResponse) -> None:
    made = await conversation(storage)
    script = Script(await create(conversation_id=made.id, items=user_items("question")))

    await finished(storage, script, ResponseStatus.FAILED)

    assert await texts(storage, made.id) == ["question"]
    assert (await read_all(storage, script.id))[-1].type == ev.FAILED


@pytest.mark.parametrize("status", [ResponseStatus.CANCELLED, ResponseStatus.FAILED])
async def test_terminated_response_appends_no_output(
    storage: Storage, create: CreateResponse, status: ResponseStatus
) -> None:
    made = await conversation(storage)
    script = Script(await create(conversation_id=made.id, items=user_items("question")))
    await script.append(storage, script.start() + script.text("half an answer"))

    terminated = await storage.responses.terminate(
        script.id, status, {"code": "server_error", "message": "gone"}
    )

    assert terminated is not None and terminated.status is status
    assert await texts(storage, made.id) == ["question"]


async def test_conflicting_terminal_append_appends_no_output(
    storage: Storage, create: CreateResponse
) -> None:
    made = await conversation(storage)
    script = Script(await create(conversation_id=made.id, items=user_items("question")))
    await script.append(storage, script.start() + script.text("answer"))
    events = script.complete()
    late = [ev.StoredEvent(e.seq + 1, e.type, e.frame) for e in events]  # one past a gap

    with pytest.raises(AppendConflictError):
        await storage.events.append(script.id, late, script.snapshot(), ResponseStatus.COMPLETED)

    assert await texts(storage, made.id) == ["question"]


async def test_response_outside_a_conversation_appends_to_none(
    storage: Storage, create: CreateResponse
) -> None:
    made = await conversation(storage, "alone")

    await finished(storage, Script(await create()), ResponseStatus.COMPLETED)

    assert await texts(storage, made.id) == ["alone"]


async def test_response_of_a_deleted_conversation_finishes_and_adds_its_output_nowhere(
    storage: Storage, create: CreateResponse
) -> None:
    gone = await conversation(storage)
    script = Script(await create(conversation_id=gone.id, items=user_items("question")))
    await storage.conversations.delete(gone.id)
    later = await conversation(storage, "later")  # may get the old one's place in the store

    await finished(storage, script, ResponseStatus.COMPLETED)

    stored = await storage.responses.get(script.id)
    assert stored is not None and stored.status is ResponseStatus.COMPLETED
    assert await storage.conversations.get(gone.id) is None
    assert await texts(storage, later.id) == ["later"]


async def test_responses_of_one_conversation_append_in_the_order_they_finish(
    storage: Storage, create: CreateResponse
) -> None:
    made = await conversation(storage)
    first = Script(await create(conversation_id=made.id, items=user_items("q1")))
    second = Script(await create(conversation_id=made.id, items=user_items("q2")))
    for script in (first, second):
        await script.append(storage, script.start() + script.text(script.id[-4:]))

    await second.append(storage, second.complete())
    await first.append(storage, first.complete())

    assert await texts(storage, made.id) == ["q1", "q2", second.id[-4:], first.id[-4:]]
