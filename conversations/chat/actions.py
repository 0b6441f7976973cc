"""What a tab can ask of a conversation: send a message, stop a reply, regenerate one, edit a
message, show another version (the branches themselves: conversations.chat.tree)."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.db import transaction

from conversations.attachments import store, upstream
from conversations.attachments.files import AttachmentError
from conversations.chat import frames, history, hub, tree
from conversations.chat.replies import Reply, announce_interrupted, request_stop
from conversations.chatsettings import panel as chatsettings
from conversations.gateway import pipeline
from conversations.gateway.errors import GatewayError
from conversations.ids import parse_id
from conversations.library import titles
from conversations.models import Conversation, Message, Model, Profile, PromptTemplate

MAX_MESSAGE_CHARS = 100_000


class ChatError(Exception):
    """A request from a tab that cannot be done; the message is shown in place."""


async def send_message(user, conversation: Conversation, text: str, model_name: str | None,
                       template: str | None = None, attachments=None) -> Reply:
    """`attachments`: the ids of the files attached in the message box (conversations.attachments)."""
    text = _checked(text)
    caller = _caller(user, conversation)
    await _choose_model(caller, conversation, model_name)  # the gateway's cache: no query, mostly
    files = await _attachments(user, conversation, attachments)
    # Everything stored for it in one hop to the database thread and one transaction: a message
    # a second per tab, from hundreds of tabs, queued behind each other's dozen hops.
    question, reply, interrupted = await sync_to_async(_store_question)(caller, conversation, text, template, files)
    await announce_interrupted(interrupted)
    await hub.publish(conversation.id, frames.message(question) + frames.title(conversation) + frames.notice(""))
    await hub.publish(conversation.id, frames.message(reply))
    return Reply(conversation, reply, caller).start()


def _store_question(caller: pipeline.Caller, conversation: Conversation, text: str,
                    template: str | None, files: list) -> tuple[Message, Message, list[int]]:
    """The question (with its files) and the empty reply under it, unless a reply is still being
    written (one whose process died is marked interrupted first: its id is returned, for the tabs)."""
    interrupted = _prepare(caller, conversation)
    with transaction.atomic():
        _choose_template_now(conversation, template)
        question = Message.objects.create(conversation=conversation, role=Message.Role.USER, content=text)
        if files:
            cuts = upstream.cut_to_fit(files, history.room_for(conversation, text))
            question.attachment_list = store.attach(files, question, cuts)
        if question.parent_id is None:  # the first message (it continues the branch shown: there is none)
            titles.name_from_question_now(conversation, text)
        conversation.save(update_fields=["model", "template", "updated_at"])
        reply = tree.add(conversation, question.id, role=Message.Role.ASSISTANT, status=Message.Status.STREAMING,
                         model=conversation.model.name, request_id=caller.request_id)
    return question, reply, interrupted


def _prepare(caller: pipeline.Caller, conversation: Conversation) -> list[int]:
    """What every new reply needs first, read in the hop that starts it: nothing else being
    written (the ids of replies found dead, for the tabs), the member's limits, and the chat
    settings as saved from the Chat settings panel since the tab opened."""
    interrupted = _interrupt_stale_or_refuse(conversation)
    caller.profile = Profile.objects.filter(user=caller.user).first()
    chatsettings.refresh(conversation)
    return interrupted


def _interrupt_stale_or_refuse(conversation: Conversation) -> list[int]:
    """Nothing else is being written here: a reply whose process died holds nothing up (it is
    marked interrupted: its id is returned), a live one refuses the request."""
    if not _streaming(conversation).exists():
        return []  # most sends: one query
    interrupted = Message.objects.filter(conversation=conversation).mark_stale_interrupted()
    if _streaming(conversation).exists():
        raise ChatError("A reply is still being written: wait for it or press Stop.")
    return interrupted


async def edit(user, conversation: Conversation, message_id, text: str) -> Reply:
    """The message written again: a sibling of it, answered by a new reply; the old branch stays."""
    text = _checked(text)
    original = await _message(conversation, message_id, Message.Role.USER, "Only your own messages can be edited.")
    caller = await _ready(user, conversation, None)
    await store.alist_for([original])  # the new version keeps the original's files
    if upstream.images_of(original.attachment_list) and not conversation.model.supports_vision:
        raise ChatError(_no_vision(conversation.model))
    await conversation.asave(update_fields=["model", "updated_at"])
    edited = await tree.aadd(conversation, original.parent_id, role=Message.Role.USER, content=text)
    if original.attachment_list:
        await store.acopy(original.id, edited)
    return await _start_reply(caller, conversation, edited.id, branch=True)


async def regenerate(user, conversation: Conversation, message_id) -> Reply:
    """Another reply in place of this one (after an error, a stop, or just to get another one):
    a sibling of it, so the first stays one of its versions."""
    replaced = await _message(conversation, message_id, Message.Role.ASSISTANT, "Only a finished reply can be regenerated.")
    if not replaced.can_regenerate:
        raise ChatError("Only a finished reply can be regenerated.")
    caller = await _ready(user, conversation, None)
    return await _start_reply(caller, conversation, replaced.parent_id, branch=True)


async def switch(conversation: Conversation, message_id) -> None:
    """Show another version of a message: the branch through it, down to its newest message."""
    target = await _message(conversation, message_id, None, "That version is not in this conversation.")
    if await _streaming(conversation).aexists():
        raise ChatError("A reply is still being written: wait for it or press Stop.")
    shape = await tree.Tree.aof(conversation.id)
    await Conversation.objects.filter(pk=conversation.id).aupdate(current_leaf=shape.tip(target.id))
    await _publish_thread(conversation)


async def stop(conversation: Conversation) -> None:
    async for message_id in _streaming(conversation).values_list("id", flat=True):
        await request_stop(message_id)


def _checked(text: str) -> str:
    text = (text or "").strip()
    if not text:
        raise ChatError("Type a message first.")
    if len(text) > MAX_MESSAGE_CHARS:
        raise ChatError(f"That message is too long ({len(text):,} characters; the limit is {MAX_MESSAGE_CHARS:,}).")
    return text


async def _attachments(user, conversation: Conversation, attached) -> list:
    """The files attached to a message about to be sent, if its model can take them."""
    if not attached:
        return []  # most messages: no hop to the database thread
    try:
        files = await store.aclaim(user, conversation, attached)
    except AttachmentError as exc:
        raise ChatError(str(exc)) from exc
    if upstream.images_of(files) and not conversation.model.supports_vision:
        raise ChatError(_no_vision(conversation.model))
    return files


def _no_vision(model: Model) -> str:
    return f"{model.label} cannot see images: choose a model that supports vision, or remove the images."


async def _ready(user, conversation: Conversation, model_name: str | None) -> pipeline.Caller:
    """Nothing else is being written, and a model to write with: the caller of a new reply."""
    caller = _caller(user, conversation)
    await announce_interrupted(await sync_to_async(_prepare)(caller, conversation))  # one hop
    await _choose_model(caller, conversation, model_name)
    return caller


async def _message(conversation: Conversation, message_id, role: str | None, refusal: str) -> Message:
    """One of this conversation's messages (of `role`), from an id a tab sent."""
    if (pk := parse_id(message_id)) is None:
        raise ChatError(refusal)
    rows = Message.objects.filter(conversation=conversation, pk=pk)
    found = await (rows.filter(role=role) if role else rows).afirst()
    if found is None:
        raise ChatError(refusal)
    return found


def _caller(user, conversation: Conversation) -> pipeline.Caller:
    """The caller of a reply; its `profile` (the member's limits) is read with the rest."""
    return pipeline.Caller(user=user, source="chat", session_id=f"conversation-{conversation.id}")


def _streaming(conversation: Conversation):
    return Message.objects.filter(conversation=conversation, status=Message.Status.STREAMING)


async def _choose_model(caller: pipeline.Caller, conversation: Conversation, model_name: str | None) -> None:
    """The conversation's model: the one picked, else the one it had, else the first usable one."""
    name = model_name or (conversation.model.name if conversation.model else None)
    if not name:
        first = await Model.objects.usable_by(caller.user).select_related("provider").afirst()
        if first is None:
            raise ChatError("No model is available yet: an admin needs to add a provider (see the README).")
        name = first.name
    try:
        conversation.model = await pipeline.resolve_model(caller, name)
    except GatewayError as exc:
        raise ChatError(exc.message) from exc


def _choose_template_now(conversation: Conversation, ref: str | None) -> None:
    """The preset picked ("" for none); None leaves the conversation's as it is."""
    if ref is None:
        return
    conversation.template = PromptTemplate.objects.filter(name=ref).first() if ref else None
    if ref and conversation.template is None:
        raise ChatError(f"There is no preset named {ref!r} any more.")


async def _start_reply(caller: pipeline.Caller, conversation: Conversation, parent_id: int | None, *,
                       branch: bool = False) -> Reply:
    """A reply under `parent_id`, streamed; on a new `branch`, the tabs are sent the branch."""
    reply = await tree.aadd(conversation, parent_id, role=Message.Role.ASSISTANT, status=Message.Status.STREAMING,
                            model=conversation.model.name, request_id=caller.request_id)
    if branch:
        reply.version = (await tree.Tree.aof(conversation.id)).version(reply.id)  # kept for its final frame
        await _publish_thread(conversation)
    else:
        await hub.publish(conversation.id, frames.message(reply))
    return Reply(conversation, reply, caller).start()


async def _publish_thread(conversation: Conversation) -> None:
    await conversation.arefresh_from_db(fields=["current_leaf"])
    shown = await tree.apage(conversation, size=tree.PAGE_MESSAGES)
    await hub.publish(conversation.id, frames.thread(conversation, shown.messages, shown.has_earlier) + frames.notice(""))

