"""Sharing a conversation read-only inside the team.

The owner shares a conversation (Share, in the header) with everyone in the team, with members
by name, or with groups; they open it at its usual address, read it (live, while a reply is
written) without the message box, and can Continue in my chats: a copy of their own. Shared
with me (/shared/) lists what others shared. Stop sharing takes effect at once: the next request
is a 404, and the reader's open websocket is told to ask again, and closed.

Who may read a conversation is decided in one place, `Conversation.objects.readable_by(user)`
(conversations/models/chat.py; `access.can_read` asks it about one conversation); every door that
shows a conversation (the page, its earlier messages, exports, the websocket) goes through it.
Everything else stays with the owner.
"""
