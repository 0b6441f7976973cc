"""The gateway pipeline: who may call what, at what cost.

Both front doors, the browser chat (conversations.chat) and the /v1 API (conversations.api), go
through here: model resolution, limits, fallbacks and usage live in this package only.
"""
