"""The settings page: projects, API keys and members managed by owners only.

Cast (tests/conftest.py): olivia owns acme, max is a member of acme, oscar
owns globex only, stella is staff (not superuser) and in no project.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from projects.auth import clear_key_cache
from projects.models import ApiKey, Membership, Project, hash_key
from tests.conftest import Api, make_event

pytestmark = pytest.mark.django_db

URL = "/dashboard/settings/"
ACME = URL + "?project=acme"


def client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def raw_key_in(html: str) -> str:
    match = re.search(r'id="new-key-value">(lo_[A-Za-z0-9_-]+)<', html)
    assert match, "the new key is not on the page"
    return match.group(1)


# --- who sees what ---------------------------------------------------------------


def test_owner_sees_manage_forms(owner, project):
    ApiKey.generate(project=project, name="ingest prod")
    response = client_for(owner).get(ACME)
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="key-create"' in html and 'id="member-invite"' in html
    assert "ingest prod" in html
    assert 'id="read-only"' not in html
    assert response.headers["Cache-Control"].startswith("max-age=0")  # never_cache
    assert "no-store" in response.headers["Cache-Control"]


def test_member_sees_the_page_read_only(member, project):
    key, _ = ApiKey.generate(project=project, name="ingest prod")
    response = client_for(member).get(ACME)
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="read-only"' in html
    assert "ingest prod" in html and key.prefix in html
    assert 'id="key-create"' not in html and 'id="member-invite"' not in html
    assert 'value="key_revoke"' not in html


def test_outsider_gets_404(outsider, project):
    assert client_for(outsider).get(ACME).status_code == 404
    response = client_for(outsider).post(ACME, {"action": "key_create", "key-name": "mine now"})
    assert response.status_code == 404
    assert not ApiKey.objects.filter(project=project).exists()


def test_login_required(project):
    response = Client().get(ACME)
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_nav_has_one_settings_link(owner, project):
    html = client_for(owner).get("/dashboard/runs/").content.decode()
    assert html.count(f'href="{URL}"') == 1


# --- API keys -------------------------------------------------------------------


def test_owner_creates_key_shown_once_and_only_hash_stored(owner, project):
    client = client_for(owner)
    response = client.post(ACME, {"action": "key_create", "key-name": "support-bot prod"})
    assert response.status_code == 201
    assert "no-store" in response.headers["Cache-Control"]
    raw = raw_key_in(response.content.decode())
    key = ApiKey.objects.get(project=project)
    assert key.name == "support-bot prod"
    assert key.key_hash == hash_key(raw)
    assert key.prefix == raw[:10]
    assert not key.is_admin
    # Nothing stored holds the raw key.
    stored = [str(v) for v in ApiKey.objects.values_list("name", "prefix", "key_hash").get()]
    assert all(raw not in value for value in stored)
    # Shown once: the next view of the page lists the key by its prefix, not the key.
    again = client.get(ACME).content.decode()
    assert key.prefix in again and raw not in again
    # And the key works.
    assert Api(raw).post_events({"events": [make_event()]}).status_code == 200


def test_admin_key_checkbox(owner, project):
    response = client_for(owner).post(ACME, {"action": "key_create", "key-name": "pricing", "key-is_admin": "on"})
    assert response.status_code == 201
    assert ApiKey.objects.get(project=project).is_admin


def test_key_name_required(owner, project):
    response = client_for(owner).post(ACME, {"action": "key_create", "key-name": "   "})
    assert response.status_code == 400
    assert "This field is required." in response.content.decode()
    assert not ApiKey.objects.exists()


def test_member_cannot_create_or_revoke_keys(member, project):
    key, raw = ApiKey.generate(project=project, name="k")
    client = client_for(member)
    assert client.post(ACME, {"action": "key_create", "key-name": "mine"}).status_code == 403
    assert client.post(ACME, {"action": "key_revoke", "key_id": key.id}).status_code == 403
    assert ApiKey.objects.filter(project=project).count() == 1
    assert not ApiKey.objects.get(id=key.id).revoked


def test_revoked_key_gets_401_on_ingest(owner, project):
    key, raw = ApiKey.generate(project=project, name="old")
    api = Api(raw)
    assert api.post_events({"events": [make_event()]}).status_code == 200  # cached as valid now
    client = client_for(owner)
    response = client.post(ACME, {"action": "key_revoke", "key_id": key.id})
    assert response.status_code == 302 and response["Location"] == ACME
    assert ApiKey.objects.get(id=key.id).revoked
    # The revoking process forgets the key at once (not after the cache's TTL).
    rejected = api.post_events({"events": [make_event()]})
    assert rejected.status_code == 401
    assert api.get("/runs/latest").status_code in (401, 403)
    page = client.get(ACME).content.decode()
    assert "Revoked the key old" in page and '<span class="badge error">revoked</span>' in page


def test_cannot_revoke_another_projects_key(owner, project, other_project):
    theirs, _ = ApiKey.generate(project=other_project)
    response = client_for(owner).post(ACME, {"action": "key_revoke", "key_id": theirs.id})
    assert response.status_code == 404
    assert not ApiKey.objects.get(id=theirs.id).revoked


def test_post_must_name_its_project(owner, project):
    # A form from a tab opened before a project switch must not act on the session's project.
    response = client_for(owner).post(URL, {"action": "key_create", "key-name": "x"})
    assert response.status_code == 404
    assert not ApiKey.objects.exists()


def test_unknown_action_is_400(owner, project):
    response = client_for(owner).post(ACME, {"action": "drop_tables"})
    assert response.status_code == 400
    assert "Unknown action" in response.content.decode()


def test_csrf_enforced(owner, project):
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    response = client.post(ACME, {"action": "key_create", "key-name": "x"})
    assert response.status_code == 403
    assert not ApiKey.objects.exists()


# --- last_used_at -------------------------------------------------------------------


def _apikey_updates(captured: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in captured.captured_queries if q["sql"].startswith("UPDATE") and "apikey" in q["sql"]]


def test_last_used_written_and_throttled(project):
    key, raw = ApiKey.generate(project=project)
    api = Api(raw)
    assert ApiKey.objects.get(id=key.id).last_used_at is None
    before = timezone.now()
    assert api.post_events({"events": [make_event()]}).status_code == 200
    first = ApiKey.objects.get(id=key.id).last_used_at
    assert first is not None and before <= first <= timezone.now()

    # A second batch within the minute: not even a query on the key's row.
    with CaptureQueriesContext(connection) as captured:
        assert api.post_events({"events": [make_event()]}).status_code == 200
    assert _apikey_updates(captured) == []
    assert ApiKey.objects.get(id=key.id).last_used_at == first

    # Another process (no memo of its own) within the minute: the conditional UPDATE matches nothing.
    thirty_ago = timezone.now() - dt.timedelta(seconds=30)
    ApiKey.objects.filter(id=key.id).update(last_used_at=thirty_ago)
    clear_key_cache()
    assert api.post_events({"events": [make_event()]}).status_code == 200
    assert ApiKey.objects.get(id=key.id).last_used_at == thirty_ago

    # Past the minute: written again.
    ApiKey.objects.filter(id=key.id).update(last_used_at=timezone.now() - dt.timedelta(seconds=61))
    clear_key_cache()
    before = timezone.now()
    assert api.get("/runs/latest").status_code == 200  # the read API counts as use too
    assert ApiKey.objects.get(id=key.id).last_used_at >= before


def test_last_used_shown(owner, project):
    key, raw = ApiKey.generate(project=project, name="used")
    ApiKey.generate(project=project, name="idle")
    ApiKey.objects.filter(id=key.id).update(last_used_at=timezone.now() - dt.timedelta(hours=3))
    html = client_for(owner).get(ACME).content.decode()
    used_row = html[html.index(f'data-key-id="{key.id}"') :].split("</tr>")[0]
    assert "3\xa0hours ago" in used_row
    idle_row = html[html.index('data-key-id="', html.index("idle") - 200) :].split("</tr>")[0]
    assert "never" in idle_row


# --- projects -------------------------------------------------------------------------


def test_create_project_makes_creator_owner(member):
    response = client_for(member).post(URL, {"action": "project_create", "create-name": "  newco  "})
    assert response.status_code == 302
    assert response["Location"] == URL + "?project=newco"
    project = Project.objects.get(name="newco")
    assert Membership.objects.get(project=project).user == member
    assert Membership.objects.get(project=project).role == Membership.OWNER


def test_user_without_projects_can_create_one(db):
    lone = User.objects.create_user("lone", password="pw-lone-123")
    client = client_for(lone)
    page = client.get(URL)
    assert page.status_code == 200 and "not in any project yet" in page.content.decode()
    assert client.post(URL, {"action": "project_create", "create-name": "first"}).status_code == 302
    assert Project.objects.get(name="first").members.get() == lone


@pytest.mark.parametrize("name", ["acme", "", "x" * 101])
def test_create_project_bad_name_is_form_error(owner, project, name):
    response = client_for(owner).post(URL, {"action": "project_create", "create-name": name})
    assert response.status_code == 400
    html = response.content.decode()
    assert 'class="field-error"' in html
    assert Project.objects.count() == 1
    if name == "acme":
        assert "A project named &#x27;acme&#x27; already exists." in html


def test_owner_renames_member_cannot(owner, member, project, other_project):
    assert client_for(member).post(ACME, {"action": "project_rename", "rename-name": "hacked"}).status_code == 403
    response = client_for(owner).post(ACME, {"action": "project_rename", "rename-name": "globex"})
    assert response.status_code == 400
    assert "already exists" in response.content.decode()
    response = client_for(owner).post(ACME, {"action": "project_rename", "rename-name": "acme labs"})
    assert response.status_code == 302 and response["Location"] == URL + "?project=acme+labs"
    assert Project.objects.get(id=project.id).name == "acme labs"


def test_timezone_and_discount(owner, member, project):
    client = client_for(owner)
    response = client.post(
        ACME, {"action": "project_settings", "timezone": "Europe/Paris", "price_discount_percent": "12.5"}
    )
    assert response.status_code == 302
    project.refresh_from_db()
    assert (project.timezone, project.price_discount_percent) == ("Europe/Paris", 12.5)
    assert (
        client_for(member)
        .post(ACME, {"action": "project_settings", "timezone": "UTC", "price_discount_percent": "0"})
        .status_code
        == 403
    )


@pytest.mark.parametrize(
    "timezone_name, discount, message",
    [
        ("Mars/Olympus", "0", "is not a time zone"),
        ("../../etc/passwd", "0", "is not a time zone"),
        ("UTC", "101", "less than or equal to 100"),
        ("UTC", "-1", "greater than or equal to 0"),
        ("UTC", "nan", "Enter a number."),
        ("UTC", "inf", "Enter a number."),
    ],
)
def test_bad_settings_are_form_errors(owner, project, timezone_name, discount, message):
    response = client_for(owner).post(
        ACME, {"action": "project_settings", "timezone": timezone_name, "price_discount_percent": discount}
    )
    assert response.status_code == 400
    assert message in response.content.decode()
    project.refresh_from_db()
    assert (project.timezone, project.price_discount_percent) == ("UTC", 0)


# --- members -----------------------------------------------------------------------------


def test_owner_invites_by_username(owner, project, outsider):
    response = client_for(owner).post(
        ACME, {"action": "member_invite", "invite-username": "oscar", "invite-role": "member"}
    )
    assert response.status_code == 302
    assert Membership.objects.get(project=project, user=outsider).role == Membership.MEMBER
    # Oscar now sees acme (read-only).
    page = client_for(outsider).get(ACME)
    assert page.status_code == 200 and 'id="read-only"' in page.content.decode()


def test_invite_as_owner(owner, project, outsider):
    client_for(owner).post(ACME, {"action": "member_invite", "invite-username": "oscar", "invite-role": "owner"})
    assert Membership.objects.get(project=project, user=outsider).role == Membership.OWNER


@pytest.mark.parametrize(
    "username, role, message",
    [
        ("nobody-here", "member", "There is no user named &#x27;nobody-here&#x27;"),
        ("max", "member", "max is already a member of acme."),
        ("oscar", "emperor", "Select a valid choice."),
        ("", "member", "This field is required."),
    ],
)
def test_bad_invite_is_form_error(owner, member, outsider, project, username, role, message):
    response = client_for(owner).post(
        ACME, {"action": "member_invite", "invite-username": username, "invite-role": role}
    )
    assert response.status_code == 400
    assert message in response.content.decode()
    assert Membership.objects.filter(project=project).count() == 2


def test_member_cannot_invite_or_remove(owner, member, project, outsider):
    client = client_for(member)
    assert (
        client.post(ACME, {"action": "member_invite", "invite-username": "oscar", "invite-role": "owner"}).status_code
        == 403
    )
    owner_row = Membership.objects.get(project=project, user=owner)
    assert client.post(ACME, {"action": "member_remove", "membership_id": owner_row.id}).status_code == 403
    assert Membership.objects.filter(project=project).count() == 2


def test_owner_removes_member(owner, member, project):
    row = Membership.objects.get(project=project, user=member)
    response = client_for(owner).post(ACME, {"action": "member_remove", "membership_id": row.id})
    assert response.status_code == 302
    assert not Membership.objects.filter(id=row.id).exists()
    assert client_for(member).get(ACME).status_code == 404


def test_last_owner_cannot_be_removed(owner, member, project):
    row = Membership.objects.get(project=project, user=owner)
    response = client_for(owner).post(ACME, {"action": "member_remove", "membership_id": row.id})
    assert response.status_code == 400
    assert "The last owner cannot be removed" in response.content.decode()
    assert Membership.objects.filter(id=row.id).exists()


def test_cannot_remove_another_projects_member(owner, project, outsider, other_project):
    theirs = Membership.objects.get(project=other_project, user=outsider)
    assert client_for(owner).post(ACME, {"action": "member_remove", "membership_id": theirs.id}).status_code == 404
    assert Membership.objects.filter(id=theirs.id).exists()


def test_staff_read_only_superuser_manages(staff, project, db):
    assert 'id="read-only"' in client_for(staff).get(ACME).content.decode()
    assert client_for(staff).post(ACME, {"action": "key_create", "key-name": "x"}).status_code == 403
    root = User.objects.create_superuser("root", "root@example.com", "pw-root-123")
    assert client_for(root).post(ACME, {"action": "key_create", "key-name": "x"}).status_code == 201


def test_last_owner_has_no_remove_button(owner, member, project):
    html = client_for(owner).get(ACME).content.decode()
    owner_row = html[html.index('data-username="olivia"') :].split("</tr>")[0]
    member_row = html[html.index('data-username="max"') :].split("</tr>")[0]
    assert "last owner" in owner_row and "Remove" not in owner_row
    assert "Remove" in member_row
