"""The Chat settings panel: what it shows, saving what was typed, and what a reply's request carries."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from conversations.gateway.errors import GatewayError
from conversations.gateway.templates import render_messages, slots_of
from conversations.gateway.validation import REASONING_EFFORTS, string, validate_fields
from conversations.models import Conversation, Model, PromptTemplate

# The request parameters a conversation keeps, by their /v1 names.
PARAMETERS = ("temperature", "top_p", "max_tokens", "reasoning_effort")
MAX_SYSTEM_PROMPT_CHARS = 100_000
# What a reply reads from the conversation as saved (the panel saves it from another request).
SAVED_FIELDS = ["system_prompt", "template", "parameters", "variables"]


@dataclass
class Slot:
    name: str
    value: str
    error: str = ""


@dataclass
class Panel:
    """The panel as shown: what is saved, or what was typed, with an error for each value that
    could not be saved."""

    conversation: Conversation
    model: Model | None  # whose reasoning support decides whether Reasoning effort is shown
    system_prompt: str
    values: dict[str, str]  # each parameter as text, by name
    preset: PromptTemplate | None
    slots: list[Slot]
    errors: dict[str, str] = field(default_factory=dict)
    saved: bool = False
    efforts = REASONING_EFFORTS

    @property
    def reasoning(self) -> bool:
        return bool(self.model and self.model.supports_reasoning)

    @cached_property
    def presets(self) -> list[PromptTemplate]:
        return list(PromptTemplate.objects.only("name", "description"))


def shown(conversation: Conversation) -> Panel:
    """The panel holding the conversation's saved settings."""
    saved = conversation.parameters or {}
    return Panel(conversation, conversation.model, conversation.system_prompt,
                 {name: _text(saved.get(name)) for name in PARAMETERS},
                 conversation.template, slots(conversation.template, conversation.variables or {}))


def choosing(conversation: Conversation, preset_name: str) -> Panel:
    """The panel with another preset chosen (not saved yet): its slots, with the values saved for
    it if it is the conversation's, else its defaults."""
    panel = shown(conversation)
    panel.preset = PromptTemplate.objects.filter(name=preset_name).first() if preset_name else None
    saved = (conversation.variables or {}) if panel.preset and panel.preset.pk == conversation.template_id else {}
    panel.slots = slots(panel.preset, saved)
    return panel


def with_model(conversation: Conversation, user, model_name: str, effort: str | None) -> Panel:
    """The panel for another model picked in the message box (not sent yet): Reasoning effort
    shown if it supports reasoning, holding the effort chosen so far."""
    panel = shown(conversation)
    panel.model = Model.objects.usable_by(user).filter(name=model_name).first() or panel.model
    if effort is not None:
        panel.values["reasoning_effort"] = effort
    return panel


def slots(preset: PromptTemplate | None, values: dict) -> list[Slot]:
    """A field per {{slot}} of the preset, holding the value given, else the slot's default."""
    if preset is None:
        return []
    defaults = preset.variables if isinstance(preset.variables, dict) else {}
    return [Slot(name, _text(values.get(name, defaults.get(name)))) for name in slots_of(preset)]


def save(conversation: Conversation, data) -> Panel:
    """The panel's form (`data`, a QueryDict) saved if every value is one /v1 would accept, else
    nothing saved and the panel as typed, each bad value with the message /v1 would give."""
    errors: dict[str, str] = {}
    system_prompt = data.get("system_prompt", "")
    try:
        string(MAX_SYSTEM_PROMPT_CHARS)("system_prompt", system_prompt)
    except GatewayError as exc:
        errors["system_prompt"] = exc.message
    saved = conversation.parameters or {}
    # Reasoning effort is not in the form for a model without reasoning: what was saved stays.
    typed = {name: data[name].strip() if name in data else _text(saved.get(name)) for name in PARAMETERS}
    parameters = {}
    for name, text in typed.items():
        if not text:
            continue
        try:
            parameters |= validate_fields({name: text if name == "reasoning_effort" else _number(text)})
        except GatewayError as exc:
            errors[name] = exc.message

    preset_name = data.get("preset", "")
    preset = PromptTemplate.objects.filter(name=preset_name).first() if preset_name else None
    if preset_name and preset is None:
        errors["preset"] = f"There is no preset named {preset_name!r} any more."
    typed_slots = {name: data.get(f"variables.{name}", "") for name in slots_of(preset)} if preset else {}
    variables = {name: value for name, value in typed_slots.items() if value != ""}  # empty: the default
    if preset is not None:
        try:
            validate_fields({"variables": variables})
            render_messages(preset, variables)  # a slot with no value and no default: named
        except GatewayError as exc:
            errors[exc.param or "preset"] = exc.message

    panel = Panel(conversation, conversation.model, system_prompt, typed, preset,
                  [Slot(name, value, errors.get(f"variables.{name}", "")) for name, value in typed_slots.items()],
                  errors=errors)
    if errors:
        return panel
    conversation.system_prompt, conversation.parameters = system_prompt, parameters
    conversation.template, conversation.variables = preset, variables
    conversation.save(update_fields=SAVED_FIELDS)
    panel.saved = True
    return panel


def refresh(conversation: Conversation) -> None:
    """The settings as saved, into a conversation object a websocket has held since it opened."""
    conversation.refresh_from_db(fields=SAVED_FIELDS)


async def arequest_fields(conversation: Conversation) -> dict:
    """What a reply's request carries from the settings, besides the model and the messages (the
    system prompt is the first of those): checked again and applied by the gateway, as on /v1."""
    fields = {name: value for name, value in (conversation.parameters or {}).items() if name in PARAMETERS}
    if not (conversation.model and conversation.model.supports_reasoning):
        fields.pop("reasoning_effort", None)  # a model without reasoning would refuse it
    if conversation.template_id:
        ref = await PromptTemplate.objects.filter(pk=conversation.template_id).values_list("uuid", flat=True).afirst()
        if ref is not None:
            fields["template"] = str(ref)
            if conversation.variables:
                fields["variables"] = dict(conversation.variables)
    return fields


def _number(text: str):
    """A number as typed, for the validator to judge: the text itself when it is not one."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _text(value) -> str:
    return "" if value is None else str(value)
