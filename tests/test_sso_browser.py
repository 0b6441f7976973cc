"""Single sign-on in a real browser: the button, the provider's login page, back signed in."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from tests.live import Server
from tests.oidc_provider.process import OidcProvider

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def idp():
    provider = OidcProvider().start()
    yield provider
    provider.stop()


@pytest.fixture(scope="module")
def sso_site(idp, django_db_setup, django_db_blocker):
    """A site process configured for the provider from the environment, as in production."""
    env = idp.settings(OIDC_NAME="Example ID", OIDC_ALLOWED_DOMAINS="example.com", OIDC_ADMIN_GROUP="chat-admins")
    with django_db_blocker.unblock():
        server = Server(env=env).start()
    idp.allow_redirect(f"{server.url}/accounts/oidc/callback/")
    yield server
    server.stop()


def test_sign_in_with_the_provider_creates_the_account_and_comes_back_signed_in(page, sso_site, idp, charlie):
    idp.person("hana", password="hana-at-provider", email="hana@example.com", email_verified=True,
               groups=["research", "chat-admins"])
    page.goto(f"{sso_site.url}/accounts/login/")
    expect(page.get_by_label("Username")).to_be_visible()  # passwords stay on beside the button
    page.get_by_role("button", name="Sign in with Example ID").click()
    page.wait_for_url(f"{idp.url}/login/**")
    page.get_by_label("Username").fill("hana")
    page.get_by_label("Password").fill("hana-at-provider")
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(f"{sso_site.url}/")
    expect(page.locator(".account")).to_contain_text("hana")
    expect(page.get_by_role("link", name="Admin")).to_be_visible()
    hana = get_user_model().objects.get(username="hana")
    assert hana.email == "hana@example.com" and hana.is_superuser
    assert {g.name for g in hana.groups.all()} == {"research", "chat-admins"}


def test_a_refusal_is_explained_on_the_login_page(page, sso_site, idp, charlie):
    idp.person("ivan", password="ivan-at-provider", email="ivan@elsewhere.org", email_verified=True)
    page.goto(f"{sso_site.url}/accounts/login/")
    page.get_by_role("button", name="Sign in with Example ID").click()
    page.get_by_label("Username").fill("ivan")
    page.get_by_label("Password").fill("ivan-at-provider")
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(f"{sso_site.url}/accounts/login/")
    expect(page.get_by_role("alert")).to_contain_text("Accounts for elsewhere.org addresses are not created here")
    assert not get_user_model().objects.filter(email="ivan@elsewhere.org").exists()
