"""What an operator watches: Prometheus metrics (`metrics.py`, served at /metrics) and one log
line per request and per reply (`logs.py`).

Both are fed at the few places where the facts are known: the ASGI entry (every request's route,
status and duration; chatsite/asgi.py), the settlement of each upstream attempt
(conversations.gateway.usage.settle: model, provider, tokens, time to first token, duration and
status, for /v1 and the chat alike), the reply task and the websocket (how many are open now),
the usage writer's queue, and the search view. No message content and no secret is ever a label
or a log field: routes are logged by name (a path can hold a reset token), keys by their visible
prefix.
"""
