"""The test provider's claims, and the endpoints the tests use to set up people and clients."""

from __future__ import annotations

import json

from django.contrib.auth.models import User
from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from oauth2_provider.models import get_application_model
from oauth2_provider.oauth2_validators import OAuth2Validator

# username -> the claims the provider asserts about them (email, email_verified, groups, ...);
# the provider is one process, so the tests' writes and the sign-ins see one dict.
CLAIMS: dict[str, dict] = {}


class Validator(OAuth2Validator):
    oidc_claim_scope = None  # every claim, custom ones such as "groups" too

    def get_additional_claims(self, request):
        return {"preferred_username": request.user.username, **CLAIMS.get(request.user.username, {})}


def healthz(request):
    return HttpResponse("ok")


@csrf_exempt
def put_user(request):
    """Create or update a person at the provider: username, password and their claims."""
    body = json.loads(request.body)
    user, _ = User.objects.get_or_create(username=body["username"])
    user.set_password(body["password"])
    user.save()
    CLAIMS[user.username] = body.get("claims", {})
    return JsonResponse({"sub": str(user.pk)})


@csrf_exempt
def add_redirect_uri(request):
    app = get_application_model().objects.get()
    app.redirect_uris = f"{app.redirect_uris} {json.loads(request.body)['uri']}".strip()
    app.save(update_fields=["redirect_uris"])
    return HttpResponse(status=204)
