"""The /v1/chat/completions body, checked in one place: the first bad field is named precisely.

Every parameter of the contract (shared/seeds) is checked for its type and range, as OpenAI's
OpenAPI specification types it (a request the specification accepts is accepted here); fields the
gateway does not know are passed through to the upstream untouched. The whole body is also checked
for what no upstream or database can take: non-finite numbers, lone surrogates, nesting deeper
than MAX_DEPTH, NUL in the names the gateway looks up or stores.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

from conversations.gateway.errors import GatewayError

ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
# OpenAI's ReasoningEffort, least to most (the chat settings list them in this order); an upstream
# that does not know a value answers for itself.
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")
TOOL_CHOICES = {"none", "auto", "required"}
FUNCTION_CALL_CHOICES = {"none", "auto"}
MODALITIES = {"text", "audio"}
MAX_N = 128  # OpenAI's own maximum
# Token counts far past any context window; the bound keeps budget reservations (max_tokens x n x
# price, in micro-units on Redis) inside a 64-bit counter.
MAX_TOKENS = 2**31 - 1
INT64 = 2**63
MAX_DEPTH = 64  # JSON nesting; tool schemas stay far below it
_SURROGATE = re.compile("[\ud800-\udfff]")


def invalid(param: str, message: str) -> GatewayError:
    return GatewayError(422, f"Invalid '{param}': {message}", code="invalid_value", param=param)


def _is_int(value) -> bool:
    """An integer as JSON Schema counts one: 1.0 is one."""
    if isinstance(value, float):
        return value.is_integer()
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return (isinstance(value, int | float)) and not isinstance(value, bool)


def number(low: float | None = None, high: float | None = None) -> Callable:
    def check(param, value):
        if not _is_number(value):
            raise invalid(param, "expected a number.")
        if (low is not None and value < low) or (high is not None and value > high):
            raise invalid(param, f"must be between {low} and {high}.")
    return check


def integer(low: int = 1, high: int | None = None) -> Callable:
    """An integer field; a whole-number float (`n: 1.0`) goes upstream as the integer."""
    def check(param, value):
        if not _is_int(value):
            raise invalid(param, "expected an integer.")
        if value < low or (high is not None and value > high):
            raise invalid(param, f"must be at least {low}" + (f" and at most {high}." if high else "."))
        return int(value)
    return check


def string(max_length: int | None = None) -> Callable:
    """A name the gateway looks up or stores: no NUL (PostgreSQL's text cannot hold one)."""
    def check(param, value):
        if not isinstance(value, str):
            raise invalid(param, "expected a string.")
        if max_length and len(value) > max_length:
            raise invalid(param, f"must be at most {max_length} characters.")
        if "\x00" in value:
            raise invalid(param, "must not contain NUL characters.")
    return check


def boolean(param, value):
    if not isinstance(value, bool):
        raise invalid(param, "expected true or false.")


def obj(param, value):
    if not isinstance(value, dict):
        raise invalid(param, "expected an object.")


def string_list(max_items: int | None = None, allowed: set[str] | None = None) -> Callable:
    def check(param, value):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise invalid(param, "expected a list of strings.")
        if any("\x00" in v for v in value):
            raise invalid(param, "must not contain NUL characters.")
        if max_items and len(value) > max_items:
            raise invalid(param, f"at most {max_items} items.")
        if allowed and (bad := [v for v in value if v not in allowed]):
            raise invalid(param, f"{bad[0]!r} is not one of {', '.join(sorted(allowed))}.")
    return check


def one_of(choices: set[str] | tuple[str, ...]) -> Callable:
    def check(param, value):
        if not isinstance(value, str) or value not in choices:
            raise invalid(param, f"must be one of {', '.join(sorted(choices))}.")
    return check


def stop(param, value):
    if isinstance(value, str):
        return
    string_list(max_items=4)(param, value)


def logit_bias(param, value):
    obj(param, value)
    for key, bias in value.items():
        if not str(key).lstrip("-").isdigit():
            raise invalid(param, f"key {key!r} is not a token id.")
        if not _is_number(bias) or not -100 <= bias <= 100:
            raise invalid(param, f"the bias of {key} must be a number from -100 to 100.")


def variables(param, value):
    obj(param, value)
    for key, val in value.items():
        if not isinstance(val, str | int | float) or isinstance(val, bool):
            raise invalid(f"{param}.{key}", "expected a string.")


def stream_options(param, value):
    obj(param, value)
    if "include_usage" in value and not isinstance(value["include_usage"], bool):
        raise invalid(f"{param}.include_usage", "expected true or false.")


def _named(param: str, value) -> None:
    if not isinstance(value, dict) or not isinstance(value.get("name"), str) or not value["name"]:
        raise invalid(f"{param}.name", "expected a name.")


def tools(param, value):
    """Function tools are checked; other types (`custom`, a provider's own) go to the upstream,
    which accepts them or answers why not."""
    if not isinstance(value, list):
        raise invalid(param, "expected a list of tools.")
    for i, tool in enumerate(value):
        if not isinstance(tool, dict) or not isinstance(tool.get("type", "function"), str):
            raise invalid(f"{param}[{i}]", "expected an object with a 'type'.")
        kind = tool.get("type", "function")
        if kind in ("function", "custom"):
            _named(f"{param}[{i}].{kind}", tool.get(kind))


def functions(param, value):
    """The legacy `functions` (before `tools`)."""
    if not isinstance(value, list) or not value:
        raise invalid(param, "expected a non-empty list of functions.")
    for i, function in enumerate(value):
        _named(f"{param}[{i}]", function)


def tool_choice(param, value):
    if isinstance(value, str):
        one_of(TOOL_CHOICES)(param, value)
    elif not isinstance(value, dict):
        raise invalid(param, "expected 'none', 'auto', 'required' or an object naming a function.")


def function_call(param, value):
    if isinstance(value, str):
        one_of(FUNCTION_CALL_CHOICES)(param, value)
    else:
        _named(param, value)


def content_part(param, part):
    if not isinstance(part, dict) or not isinstance(part.get("type"), str):
        raise invalid(param, "each content part is an object with a 'type'.")
    if part["type"] == "text" and not isinstance(part.get("text"), str):
        raise invalid(f"{param}.text", "expected a string.")
    if part["type"] == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        if not isinstance(url, str) or not url:
            raise invalid(f"{param}.image_url.url", "expected an image URL or data URL.")


def messages(param, value):
    if not isinstance(value, list) or not value:
        raise invalid(param, "expected a non-empty list of messages.")
    for i, message in enumerate(value):
        where = f"{param}[{i}]"
        if not isinstance(message, dict):
            raise invalid(where, "expected an object with 'role' and 'content'.")
        if not isinstance(message.get("role"), str) or message["role"] not in ROLES:
            raise invalid(f"{where}.role", f"must be one of {', '.join(sorted(ROLES))}.")
        content = message.get("content")
        if isinstance(content, list):
            for j, part in enumerate(content):
                content_part(f"{where}.content[{j}]", part)
        elif content is None:
            if not _may_omit_content(message):
                raise invalid(f"{where}.content", "is required (it may be null only in an assistant message with "
                                                  "tool_calls, function_call, refusal or audio, or a function message).")
        elif not isinstance(content, str):
            raise invalid(f"{where}.content", "expected a string or a list of content parts.")
        if message["role"] == "tool" and not isinstance(message.get("tool_call_id"), str):
            raise invalid(f"{where}.tool_call_id", "a tool message answers a tool call: give its id.")
        if message["role"] == "function" and not isinstance(message.get("name"), str):
            raise invalid(f"{where}.name", "a function message names the function it answers.")
        if "tool_calls" in message and not isinstance(message["tool_calls"], list):
            raise invalid(f"{where}.tool_calls", "expected a list.")
        if message.get("function_call") is not None:
            _named(f"{where}.function_call", message["function_call"])


def _may_omit_content(message: dict) -> bool:
    """OpenAI's rule: content is required unless the assistant called a tool or a function (or
    answered with a refusal or audio); a function's result may be null."""
    if message["role"] == "function":
        return True
    return message["role"] == "assistant" and any(
        message.get(field) for field in ("tool_calls", "function_call", "refusal", "audio"))


def nullable(check: Callable) -> Callable:
    def wrapped(param, value):
        if value is not None:
            return check(param, value)
    return wrapped


FIELDS: dict[str, Callable] = {
    "model": nullable(string(200)),
    "messages": messages,
    "stream": nullable(boolean),
    "stream_options": nullable(stream_options),
    "temperature": nullable(number(0, 2)),
    "top_p": nullable(number(0, 1)),
    "n": nullable(integer(1, MAX_N)),
    "max_tokens": nullable(integer(1, MAX_TOKENS)),
    "max_completion_tokens": nullable(integer(1, MAX_TOKENS)),
    "stop": nullable(stop),
    "seed": nullable(integer(-INT64, INT64 - 1)),
    "presence_penalty": nullable(number(-2, 2)),
    "frequency_penalty": nullable(number(-2, 2)),
    "logit_bias": nullable(logit_bias),
    "response_format": nullable(obj),
    "tools": nullable(tools),
    "tool_choice": nullable(tool_choice),
    "functions": nullable(functions),
    "function_call": nullable(function_call),
    "parallel_tool_calls": nullable(boolean),
    "reasoning_effort": nullable(one_of(REASONING_EFFORTS)),
    "modalities": nullable(string_list(allowed=MODALITIES)),
    "audio": nullable(obj),
    "user": nullable(string(256)),
    "logprobs": nullable(boolean),
    "top_logprobs": nullable(integer(0, 20)),
    # gateway extensions
    "template": nullable(string(200)),
    "variables": nullable(variables),
    "session_id": nullable(string(200)),
    "models": nullable(string_list(max_items=10)),
    "transforms": nullable(string_list()),
}


def validate_chat_request(body) -> dict:
    """The body, checked; raises GatewayError(422) naming the first bad field."""
    if not isinstance(body, dict):
        raise GatewayError(422, "The request body must be a JSON object.", code="invalid_body")
    check_values(body)
    if "messages" not in body and not body.get("template"):
        raise GatewayError(422, "Missing required parameter: 'messages'.", code="missing_required_parameter", param="messages")
    for field, check in FIELDS.items():
        if field in body and not (field == "messages" and body.get("template") and body[field] in (None, [])):
            _check_field(body, field, check)
    return body


def validate_fields(fields: dict) -> dict:
    """Some fields of a chat request, each checked exactly as in a whole request (the chat's
    settings panel checks what a member types with it); raises GatewayError(422) naming the
    first bad one. Whole-number floats are made integers in place, as in a request."""
    check_values(fields)
    for field in fields:
        _check_field(fields, field, FIELDS[field])
    return fields


def _check_field(body: dict, field: str, check: Callable) -> None:
    normalized = check(field, body[field])
    if normalized is not None:
        body[field] = normalized


def too_deep() -> GatewayError:
    return GatewayError(422, f"The request body is nested more than {MAX_DEPTH} levels deep.", code="invalid_body")


def check_values(body: dict) -> None:
    """What no field may hold, anywhere in the body (passed-through fields too): non-finite
    numbers, lone surrogates (not Unicode: no upstream can be sent one), nesting past MAX_DEPTH."""
    for field, value in body.items():
        param = field[:100].encode("utf-8", "backslashreplace").decode()
        stack = [(field, 1), (value, 1)]
        while stack:
            item, depth = stack.pop()
            if isinstance(item, str):
                if not item.isascii() and _SURROGATE.search(item):
                    raise invalid(param, "contains a lone surrogate (\\ud800-\\udfff), which is not Unicode text.")
            elif isinstance(item, float):
                if not math.isfinite(item):
                    raise invalid(param, "numbers must be finite.")
            elif isinstance(item, dict | list):
                if depth >= MAX_DEPTH:
                    raise too_deep()
                children = (x for pair in item.items() for x in pair) if isinstance(item, dict) else item
                stack.extend((child, depth + 1) for child in children)
