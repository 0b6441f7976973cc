"""Single sign-on against a real OpenID provider (tests/oidc_provider, its own process on
loopback): who comes in, with which groups, and every way a sign-in fails ending in a sentence."""

from __future__ import annotations

import re
from io import StringIO
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command

from conversations.admin.people import invite
from conversations.models import Identity, Model
from tests.live import free_port
from tests.oidc_provider.process import OidcProvider

User = get_user_model()
CALLBACK = "http://testserver/accounts/oidc/callback/"


@pytest.fixture(scope="module")
def idp():
    provider = OidcProvider().start()
    provider.allow_redirect(CALLBACK)
    yield provider
    provider.stop()


@pytest.fixture
def sso(settings, idp, charlie):
    """The site set up for the provider (charlie, the first-run admin, exists: a site with no
    users leads everyone to the setup page first)."""
    settings.OIDC_ISSUER = idp.issuer
    settings.OIDC_RP_CLIENT_ID = idp.client_id
    settings.OIDC_RP_CLIENT_SECRET = idp.client_secret
    settings.OIDC_NAME = "Example ID"
    settings.OIDC_ALLOWED_DOMAINS = ["example.com"]
    settings.OIDC_ADMIN_GROUP = "chat-admins"
    return idp


def start(client, **params) -> str:
    """The "Sign in with" button: where it sends the browser."""
    response = client.get("/accounts/oidc/authenticate/", params)
    assert response.status_code == 302, response
    return response["Location"]


def sign_in(client, idp, username: str):
    """The whole flow: button, provider login, back to the callback; the callback's response."""
    return client.get(idp.authorize(start(client), username))


def signed_in_as(client):
    response = client.get("/")
    return response.wsgi_request.user if response.status_code == 200 else None


def notice(client) -> str:
    page = client.get("/accounts/login/").content.decode()
    return " ".join(re.findall(r'role="alert">([^<]*)<', page))


def test_the_login_page_offers_the_provider_beside_passwords(client, sso):
    page = client.get("/accounts/login/").content.decode()
    assert "Sign in with Example ID" in page
    assert 'name="username"' in page and ">Log in</button>" in page


def test_the_login_page_has_no_button_when_sso_is_not_configured(client, charlie):
    assert "Sign in with" not in client.get("/accounts/login/").content.decode()
    assert client.get("/accounts/oidc/authenticate/").status_code == 404


def test_the_request_carries_state_nonce_and_a_pkce_challenge(client, sso):
    query = parse_qs(urlsplit(start(client)).query)
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) >= 43
    assert len(query["state"][0]) >= 32 and len(query["nonce"][0]) >= 32
    assert query["redirect_uri"] == [CALLBACK]


def test_someone_from_an_allowed_domain_gets_an_account_on_first_sign_in(client, sso, idp):
    idp.person("dana", email="Dana@Example.com", email_verified=True, given_name="Dana")
    response = sign_in(client, idp, "dana")
    assert response.status_code == 302 and response["Location"] == "/"
    dana = signed_in_as(client)
    assert dana.username == "dana" and dana.email == "Dana@Example.com" and dana.first_name == "Dana"
    assert not dana.has_usable_password() and not dana.is_staff
    # The next sign-in finds the same account.
    client.logout()
    sign_in(client, idp, "dana")
    assert signed_in_as(client).pk == dana.pk and User.objects.filter(email__iexact="dana@example.com").count() == 1


@pytest.mark.parametrize(("next_url", "landing"), [("/search/?q=x", "/search/?q=x"), ("https://evil.example/", "/")])
def test_sign_in_returns_to_the_page_asked_for_on_this_site_only(client, sso, idp, next_url, landing):
    idp.person("lee", email="lee@example.com", email_verified=True)
    response = client.get(idp.authorize(start(client, next=next_url), "lee"))
    assert response["Location"] == landing and signed_in_as(client).username == "lee"


def test_other_domains_get_no_account(client, sso, idp):
    idp.person("eve", email="eve@elsewhere.org", email_verified=True)
    response = sign_in(client, idp, "eve")
    assert response.status_code == 302 and response["Location"] == "/accounts/login/"
    assert "Accounts for elsewhere.org addresses are not created here" in notice(client)
    assert signed_in_as(client) is None and not User.objects.filter(email="eve@elsewhere.org").exists()


def test_invited_only_lets_in_the_invited_and_nobody_else(client, sso, idp, settings):
    settings.OIDC_INVITED_ONLY = True
    idp.person("frank", email="frank@example.com", email_verified=True)
    sign_in(client, idp, "frank")
    assert "There is no account here for frank@example.com. Ask an admin to invite you." in notice(client)
    assert signed_in_as(client) is None
    invited = invite("frank.local", "frank@example.com")
    sign_in(client, idp, "frank")
    assert signed_in_as(client).pk == invited.pk


def test_an_existing_account_is_linked_by_verified_email_only(client, sso, idp, alice):
    idp.person("alice-at-idp", email="alice@example.com", email_verified=False)
    sign_in(client, idp, "alice-at-idp")
    assert "has not verified your email address (alice@example.com)" in notice(client)
    assert signed_in_as(client) is None
    idp.person("alice-at-idp", email="alice@example.com", email_verified=True)
    sign_in(client, idp, "alice-at-idp")
    assert signed_in_as(client).pk == alice.pk
    assert User.objects.filter(email__iexact="alice@example.com").count() == 1


def test_later_sign_ins_find_the_member_by_their_subject_whatever_their_email_becomes(client, sso, idp):
    idp.person("dora", email="dora@example.com", email_verified=True)
    sign_in(client, idp, "dora")
    dora = signed_in_as(client)
    assert dora is not None and dora.email == "dora@example.com"
    assert Identity.objects.get(user=dora).issuer == idp.issuer
    client.logout()
    # The provider renames her address (and no longer says it is verified): still her account.
    idp.person("dora", email="dora.married@example.com", email_verified=False)
    sign_in(client, idp, "dora")
    assert signed_in_as(client).pk == dora.pk
    assert User.objects.filter(email__iexact="dora.married@example.com").count() == 0  # no second account


def test_an_address_taken_over_at_the_provider_does_not_open_the_linked_account(client, sso, idp, alice):
    idp.person("alice-linked", email="alice@example.com", email_verified=True)
    sign_in(client, idp, "alice-linked")
    assert signed_in_as(client).pk == alice.pk
    client.logout()
    # Someone else at the provider gets alice's address: the account is alice's identity's only.
    idp.person("mallory", email="alice@example.com", email_verified=True)
    sign_in(client, idp, "mallory")
    assert "belongs to someone else at Example ID" in notice(client)
    assert signed_in_as(client) is None
    assert Identity.objects.filter(user=alice).count() == 1


def test_a_deactivated_member_cannot_sign_in(client, sso, idp, alice):
    alice.is_active = False
    alice.save(update_fields=["is_active"])
    idp.person("alice", email="alice@example.com", email_verified=True)
    sign_in(client, idp, "alice")
    assert "This account is deactivated" in notice(client)
    assert signed_in_as(client) is None


def test_a_session_ends_when_the_member_is_deactivated(client, sso, idp, alice):
    idp.person("alice", email="alice@example.com", email_verified=True)
    sign_in(client, idp, "alice")
    assert signed_in_as(client).pk == alice.pk
    alice.is_active = False
    alice.save(update_fields=["is_active"])
    assert signed_in_as(client) is None
    # Signing in again finds her by her subject (linked at the first sign-in): still refused.
    sign_in(client, idp, "alice")
    assert "This account is deactivated" in notice(client)
    assert signed_in_as(client) is None


def test_groups_and_the_admin_role_follow_the_claims_at_each_sign_in(client, sso, idp, provider):
    research = Group.objects.create(name="research")
    private = Model.objects.get(name="echo")
    private.groups.add(research)
    idp.person("gina", email="gina@example.com", email_verified=True, groups=["research", "ops"])
    sign_in(client, idp, "gina")
    gina = signed_in_as(client)
    assert {g.name for g in gina.groups.all()} == {"research", "ops"} and not gina.is_superuser
    assert private in Model.objects.usable_by(gina)

    idp.person("gina", email="gina@example.com", email_verified=True, groups=["ops", "chat-admins"])
    gina.refresh_from_db()
    assert {g.name for g in gina.groups.all()} == {"research", "ops"}  # until the next sign-in
    client.logout()
    sign_in(client, idp, "gina")
    gina.refresh_from_db()
    assert {g.name for g in gina.groups.all()} == {"ops", "chat-admins"}
    assert gina.is_superuser and gina.is_staff
    assert client.get("/admin/").status_code == 200

    idp.person("gina", email="gina@example.com", email_verified=True, groups=[])
    client.logout()
    sign_in(client, idp, "gina")
    gina.refresh_from_db()
    assert not gina.groups.exists() and not gina.is_superuser and not gina.is_staff
    member = User.objects.create_user("member")
    member.groups.add(Group.objects.get(name="ops"))
    assert private not in Model.objects.usable_by(gina) and private not in Model.objects.usable_by(member)


def test_a_tampered_state_is_refused(client, sso, idp):
    idp.person("hal", email="hal@example.com", email_verified=True)
    back = idp.authorize(start(client), "hal")
    response = client.get(re.sub(r"state=[^&]+", "state=forged", back))
    assert response.status_code == 302 and response["Location"] == "/accounts/login/"
    assert "The sign-in could not be verified" in notice(client)
    assert signed_in_as(client) is None


def test_a_callback_from_another_browser_is_refused(client, sso, idp):
    idp.person("hal", email="hal@example.com", email_verified=True)
    back = idp.authorize(start(client), "hal")
    other = client.__class__()
    assert other.get(back)["Location"] == "/accounts/login/"
    assert "did not complete" in notice(other) and signed_in_as(other) is None


def test_a_used_code_is_refused(client, sso, idp):
    idp.person("ivy", email="ivy@example.com", email_verified=True)
    back = idp.authorize(start(client), "ivy")
    client.get(back)
    assert signed_in_as(client).username == "ivy"
    # The same code with a fresh state of another browser: the provider refuses it.
    other = client.__class__()
    fresh_state = parse_qs(urlsplit(start(other)).query)["state"][0]
    response = other.get(re.sub(r"state=[^&]+", f"state={fresh_state}", back))
    assert response["Location"] == "/accounts/login/"
    assert "Example ID did not accept this sign-in (it may have expired or been used already)" in notice(other)
    assert signed_in_as(other) is None
    # And the same callback again in the first browser: its state is spent.
    client.logout()
    client.get(back)
    assert "did not complete" in notice(client) and signed_in_as(client) is None


@pytest.mark.parametrize(("field", "message"), [
    ("nonce", "The sign-in could not be verified"),  # the ID token carries another nonce: we refuse
    ("code_verifier", "Example ID did not accept this sign-in"),  # a wrong PKCE verifier: the provider refuses
])
def test_a_tampered_nonce_or_pkce_verifier_is_refused(client, sso, idp, field, message):
    idp.person("kim", email="kim@example.com", email_verified=True)
    back = idp.authorize(start(client), "kim")
    session = client.session
    for pending in session["oidc_states"].values():
        pending[field] = "x" * 64
    session.save()
    client.get(back)
    assert message in notice(client) and signed_in_as(client) is None


def test_a_provider_that_is_down_gives_a_clear_message(client, sso, settings):
    settings.OIDC_ISSUER = f"http://127.0.0.1:{free_port()}/o"
    response = client.get("/accounts/oidc/authenticate/")
    assert response.status_code == 302 and response["Location"] == "/accounts/login/"
    assert "Example ID cannot be reached right now" in notice(client)


@pytest.fixture
def short_lived(sso, settings):
    """A provider of its own, which a test may stop or set up oddly."""

    def start(**env) -> OidcProvider:
        provider = OidcProvider(**env).start()
        started.append(provider)
        provider.allow_redirect(CALLBACK)
        settings.OIDC_ISSUER = provider.issuer
        settings.OIDC_RP_CLIENT_ID = provider.client_id
        settings.OIDC_RP_CLIENT_SECRET = provider.client_secret
        return provider

    started: list[OidcProvider] = []
    yield start
    for provider in started:
        provider.stop()


def test_a_provider_that_goes_down_mid_sign_in_gives_a_clear_message(client, short_lived):
    provider = short_lived()
    provider.person("jo", email="jo@example.com", email_verified=True)
    back = provider.authorize(start(client), "jo")
    provider.process.terminate()
    provider.process.wait(10)
    response = client.get(back)
    assert response.status_code == 302 and response["Location"] == "/accounts/login/"
    assert "Example ID cannot be reached right now" in notice(client)
    assert signed_in_as(client) is None


def test_an_expired_id_token_is_refused(client, short_lived):
    provider = short_lived(PROVIDER_ID_TOKEN_SECONDS="-600")
    provider.person("jo", email="jo@example.com", email_verified=True)
    client.get(provider.authorize(start(client), "jo"))
    assert "The sign-in could not be verified" in notice(client) and signed_in_as(client) is None


# -- local passwords off


def test_with_passwords_off_no_password_signs_in(client, settings, alice, charlie):
    settings.PASSWORD_LOGIN = False
    page = client.get("/accounts/login/").content.decode()
    assert 'name="password"' not in page
    response = client.post("/accounts/login/", {"username": "alice", "password": "alice-password"})
    assert response.status_code == 200 and signed_in_as(client) is None
    response = client.post("/admin/login/", {"username": "charlie", "password": "charlie-password"})
    assert response.status_code == 200 and client.get("/admin/").status_code == 302
    settings.PASSWORD_LOGIN = True
    client.post("/accounts/login/", {"username": "alice", "password": "alice-password"})
    assert signed_in_as(client).pk == alice.pk


def test_a_break_glass_link_logs_a_superuser_in_once(client, settings, charlie, alice):
    settings.PASSWORD_LOGIN = False
    out = StringIO()
    call_command("users", "breakglass", "charlie", "--site-url", "http://testserver", stdout=out)
    link = re.search(r"http://testserver(/accounts/breakglass/\S+)", out.getvalue()).group(1)
    page = client.get(link)
    assert page.status_code == 200 and "Log in as charlie" in page.content.decode()
    assert client.post(link)["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200
    client.logout()
    assert client.post(link).status_code == 400  # once
    assert client.get("/admin/").status_code == 302
    with pytest.raises(CommandError, match="No active superuser named 'alice'"):
        call_command("users", "breakglass", "alice")


def test_a_break_glass_link_expires(client, settings, charlie):
    out = StringIO()
    call_command("users", "breakglass", "charlie", "--site-url", "http://testserver", stdout=out)
    link = re.search(r"http://testserver(/accounts/breakglass/\S+)", out.getvalue()).group(1)
    settings.BREAKGLASS_SECONDS = -1
    assert client.post(link).status_code == 400 and client.get("/admin/").status_code == 302


def test_the_first_run_page_works_with_passwords_off(client, settings, db):
    settings.PASSWORD_LOGIN = False
    assert client.get("/")["Location"] == "/setup/"
    client.post("/setup/", {"username": "root", "email": "", "password1": "a-long-pass-phrase",
                            "password2": "a-long-pass-phrase"})
    assert signed_in_as(client).username == "root" and client.get("/admin/").status_code == 200
