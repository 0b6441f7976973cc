"""A conversation's title: the first words of its question at once, then, after the first reply,
a short title written by a model (CHAT_TITLE_MODEL, else the conversation's) through the gateway
pipeline with a usage source of its own ("title"). A title the member set is never replaced, and
if the model fails the first words stay.
"""

from __future__ import annotations

import logging

from asgiref.sync import sync_to_async
from django.conf import settings

from conversations.chat import frames, hub
from conversations.gateway import pipeline
from conversations.gateway.errors import GatewayError
from conversations.models import Conversation, Message, Profile, UsageRecord

log = logging.getLogger("chatsite.chat")

TITLE_CHARS = 60
EXCERPT_CHARS = 2000  # of the question and the reply: enough to name them, cheap to send
INSTRUCTIONS = ("Write a short title, at most six words, for the conversation that the user shows you. "
                "Answer with the title only: no quotes, no full stop.")


def first_words(text: str) -> str:
    """A title from a text: its words on one line, cut at TITLE_CHARS."""
    line = " ".join(text.split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"


def from_model_output(text: str) -> str:
    """The model's answer as a title: its first line, without the quotes and marks models add."""
    line = next((s for s in (text or "").splitlines() if s.strip()), "")
    line = line.strip().strip("\"'“”‘’*#` ").removeprefix("Title:").strip().rstrip(".").strip("\"'“”‘’ ")
    return first_words(line)


def name_from_question_now(conversation: Conversation, text: str) -> None:
    """The first words of the first question, unless the member named it (maybe in another
    request since this object was loaded: the database says). Synchronous: the chat stores a
    question in one hop (conversations.chat.actions)."""
    Conversation.objects.filter(pk=conversation.pk, title_set_by_member=False).update(title=first_words(text))
    conversation.title, conversation.title_set_by_member = (
        Conversation.objects.filter(pk=conversation.pk).values_list("title", "title_set_by_member").get())


async def name_after_first_reply(conversation: Conversation, reply: Message, user, profile: Profile | None = None) -> None:
    """After a conversation's first finished reply, ask a model for its title (unless the member
    named it). Failures leave the title as it was: they are logged, never raised."""
    if not settings.CHAT_AUTO_TITLE or reply.status != Message.Status.COMPLETE:
        return
    found, question = await sync_to_async(_first_question_to_name)(conversation.id, reply.id)
    if not found:
        return
    try:
        title = await suggest(user, conversation.id, settings.CHAT_TITLE_MODEL or reply.model, question or "",
                              reply.content, profile)
    except GatewayError as exc:
        log.warning("no title for conversation %s: %s", conversation.id, exc.message)
        return
    except Exception:
        log.exception("no title for conversation %s", conversation.id)
        return
    # Conditional, in one statement: a rename that lands meanwhile wins.
    if title and await Conversation.objects.filter(pk=conversation.id, title_set_by_member=False).aupdate(title=title):
        conversation.title = title
        await hub.publish(conversation.id, frames.title(conversation))


def _first_question_to_name(conversation_id: int, reply_id: int) -> tuple[bool, str]:
    """Whether this is the first reply of a conversation the member has not named, and its
    question (one hop to the database thread)."""
    earlier = Message.objects.filter(conversation_id=conversation_id, id__lt=reply_id)
    if earlier.filter(role=Message.Role.ASSISTANT).exists():
        return False, ""
    if Conversation.objects.filter(pk=conversation_id, title_set_by_member=True).exists():
        return False, ""
    return True, earlier.filter(role=Message.Role.USER).order_by("id").values_list("content", flat=True).first() or ""


async def suggest(user, conversation_id: int, model_name: str, question: str, reply: str,
                  profile: Profile | None = None) -> str:
    """`profile`: the member's limits, as the reply just read them (else read here)."""
    if profile is None:
        profile = await Profile.objects.filter(user=user).afirst()
    caller = pipeline.Caller(user=user, source=UsageRecord.Source.TITLE, session_id=f"conversation-{conversation_id}",
                             profile=profile)
    body = {"model": model_name, "max_tokens": 30, "messages": [
        {"role": "system", "content": INSTRUCTIONS},
        {"role": "user", "content": f"{question[:EXCERPT_CHARS]}\n\n{reply[:EXCERPT_CHARS]}"},
    ]}
    response = await pipeline.complete(await pipeline.plan(caller, body))
    choices = response.get("choices") or [{}]
    return from_model_output((choices[0].get("message") or {}).get("content") or "")
