"""Conversations in and out: export one as Markdown or JSON, import files of them (ours,
ChatGPT's conversations.json, Open WebUI's export)."""
