"""Chat settings: what one conversation sends with every reply besides its messages.

The panel (templates/conversations/chat_settings.html) sets the conversation's system prompt, its
request parameters (temperature, top_p, max_tokens, reasoning_effort) and its preset (a prompt
template) with the values of the preset's {{slots}}. Values are checked by the gateway's own
validation (conversations.gateway.validation, templates), the rules /v1 applies, before anything is
saved; each reply's request then carries them through the same pipeline as /v1 (`request_fields`).
"""
