"""The member's settings page, /settings/: their preferences (the theme, what a new chat starts
with), the way to their API keys, and their data (export all, import: conversations.transfer). Each part of the page is a section of templates/conversations/settings.html."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.shortcuts import redirect, render
from django.utils.functional import SimpleLazyObject

from conversations.models import Model, Preferences


class PreferencesForm(forms.ModelForm):
    class Meta:
        model = Preferences
        fields = ["theme", "default_model", "system_prompt"]
        widgets = {"theme": forms.RadioSelect, "system_prompt": forms.Textarea(attrs={"rows": 4})}
        labels = {"default_model": "Model", "system_prompt": "System prompt"}

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["default_model"].queryset = Model.objects.usable_by(user).order_by("name")
        self.fields["default_model"].empty_label = "The first one available"


def settings_page(request):
    form = _form(request, request.POST or None)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, "Settings saved.")
        return redirect("settings")
    return render_page(request, form, status=400 if form.errors else 200)


def render_page(request, form: PreferencesForm | None = None, status: int = 200, **context):
    """The page; other parts' views (the import) answer with it and their own `context`."""
    return render(request, "conversations/settings.html", {"form": form if form is not None else _form(request), **context}, status=status)


def _form(request, data=None) -> PreferencesForm:
    preferences = Preferences.objects.filter(user=request.user).first() or Preferences(user=request.user)
    return PreferencesForm(data, instance=preferences, user=request.user)


def theme(request) -> dict[str, str]:
    """Context processor: base.html puts the member's theme on <html> as data-theme, so the page
    is drawn in it from the first paint (no flash of the other theme while a script loads)."""
    # Lazy: fragments rendered with a request (search results, older messages) never ask.
    return {"theme": SimpleLazyObject(lambda: Preferences.theme_of(getattr(request, "user", None)))}
