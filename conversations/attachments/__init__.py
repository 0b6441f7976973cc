"""Attachments: files added to a message (Attach files, paste, drag and drop).

It owns the whole life of an attached file:
- `files.py` reads an upload and decides what it is from its content (Pillow for images, pypdf
  and python-docx for documents, UTF-8 for text), with the limits and a clear error for each
  file that cannot be taken; images are scaled to at most 2048 px and get a thumbnail.
- `store.py` keeps them: the files in the storage named `attachments` (settings.STORAGES, a
  folder under var/ by default), the rows (conversations.models.Attachment); claims them for a
  message when it is sent, lists them for the messages shown, deletes the files with their rows.
- `access.py` is the one rule for who may see an attachment.
- `upstream.py` turns a message and its attachments into what the model is sent: image_url parts
  for a model that supports vision, fenced blocks for text and documents, cut to fit.
- `views.py` the upload (a fragment of chips for the message box) and the serving views: files
  are never at a public URL.
"""
