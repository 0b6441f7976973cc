"""Organising one's conversations: the grouped, paged list (sidebar and /archived/), rename, pin,
archive, and the automatic title written after the first reply."""
