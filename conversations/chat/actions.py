"""What a tab can ask of a conversation: send a message, stop a reply, regenerate one."""

from __future__ import annotations

from conversations.chat import frames, hub
from conversations.chat.replies import Reply, interrupt_stale, request_stop
from conversations.gateway import pipeline
from conversations.gateway.errors import GatewayError
from conversations.library import titles
from conversations.models import Conversation, Message, Model, Profile, PromptTemplate

MAX_MESSAGE_CHARS = 100_000


class ChatError(Exception):
    """A request from a tab that cannot be done; the message is shown in place."""


async def send_message(user, conversation: Conversation, text: str, model_name: str | None,
                       template: str | None = None) -> Reply:
    text = (text or "").strip()
    if not text:
        raise ChatError("Type a message first.")
    if len(text) > MAX_MESSAGE_CHARS:
        raise ChatError(f"That message is too long ({len(text):,} characters; the limit is {MAX_MESSAGE_CHARS:,}).")
    await interrupt_stale(conversation.id)  # a reply whose process died holds nothing up
    if await _streaming(conversation).aexists():
        raise ChatError("A reply is still being written: wait for it or press Stop.")
    caller = await _caller(user, conversation)
    await _choose_model(caller, conversation, model_name)

    await _choose_template(conversation, template)
    user_message = await Message.objects.acreate(conversation=conversation, role=Message.Role.USER, content=text)
    if not await conversation.messages.exclude(pk=user_message.pk).aexists():
        await titles.name_from_question(conversation, text)
    await conversation.asave(update_fields=["model", "template", "updated_at"])
    await hub.publish(conversation.id, frames.message(user_message) + frames.title(conversation) + frames.notice(""))
    return await _start_reply(caller, conversation)


async def regenerate(user, conversation: Conversation, message_id) -> Reply:
    """Write the last reply again (after an error, a stop, or just to get another one)."""
    last = await conversation.messages.order_by("-id").afirst()
    if last is None or str(last.id) != str(message_id) or not last.can_regenerate:
        raise ChatError("Only the last reply, once finished, can be regenerated.")
    caller = await _caller(user, conversation)
    await _choose_model(caller, conversation, None)
    await last.adelete()
    await hub.publish(conversation.id, f'<div id="msg-{message_id}" hx-swap-oob="delete"></div>')
    return await _start_reply(caller, conversation)


async def stop(conversation: Conversation) -> None:
    async for message_id in _streaming(conversation).values_list("id", flat=True):
        await request_stop(message_id)


async def _caller(user, conversation: Conversation) -> pipeline.Caller:
    return pipeline.Caller(user=user, source="chat", session_id=f"conversation-{conversation.id}",
                           profile=await Profile.objects.filter(user=user).afirst())


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


async def _choose_template(conversation: Conversation, ref: str | None) -> None:
    """The preset picked ("" for none); None leaves the conversation's as it is."""
    if ref is None:
        return
    conversation.template = await PromptTemplate.objects.filter(name=ref).afirst() if ref else None
    if ref and conversation.template is None:
        raise ChatError(f"There is no preset named {ref!r} any more.")


async def _start_reply(caller: pipeline.Caller, conversation: Conversation) -> Reply:
    reply = await Message.objects.acreate(
        conversation=conversation, role=Message.Role.ASSISTANT, status=Message.Status.STREAMING,
        model=conversation.model.name, request_id=caller.request_id,
    )
    await hub.publish(conversation.id, frames.message(reply))
    return Reply(conversation, reply, caller).start()
