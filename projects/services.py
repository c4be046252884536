"""Writes on projects, their members and API keys.

Each function checks nothing about *who* asks (the view does, with
projects.access); each enforces the data's own rules and says what is wrong
with a ValidationError, never an IntegrityError the user cannot read.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from projects.auth import key_cache_forget
from projects.models import ApiKey, Membership, Project


@transaction.atomic
def api_key_create(*, project_name: str, is_admin: bool = False, name: str = "") -> tuple[ApiKey, str]:
    """Create a key (and its project when new); returns the row and the raw key."""
    project, _ = Project.objects.get_or_create(name=project_name)
    return ApiKey.generate(project=project, name=name, is_admin=is_admin)


def api_key_issue(*, project: Project, name: str, is_admin: bool = False) -> tuple[ApiKey, str]:
    """A new key for an existing project: the row (holding only the key's hash
    and first characters) and the raw key, which the caller shows once."""
    return ApiKey.generate(project=project, name=name.strip(), is_admin=is_admin)


def api_key_revoke(*, project: Project, key_id: int) -> ApiKey:
    """Revoke one of the project's keys (revoking twice is a no-op); ApiKey.DoesNotExist
    for a key of another project."""
    key = ApiKey.objects.get(id=key_id, project=project)  # DoesNotExist for another project's key
    ApiKey.objects.filter(id=key.id, revoked=False).update(revoked=True)
    key_cache_forget(key_hash=key.key_hash)
    key.revoked = True
    return key


def _name_clean(name: str) -> str:
    name = name.strip()
    if not name:
        raise ValidationError("A project needs a name.")
    if len(name) > Project._meta.get_field("name").max_length:  # type: ignore[operator]
        raise ValidationError("A project name is at most 100 characters.")
    if Project.objects.filter(name=name).exists():
        raise ValidationError(f"A project named {name!r} already exists.")
    return name


def project_create(*, name: str, owner: AbstractBaseUser) -> Project:
    """A new project; its creator is its first owner."""
    name = _name_clean(name)
    try:
        with transaction.atomic():
            project = Project.objects.create(name=name)
            Membership.objects.create(project=project, user_id=owner.pk, role=Membership.OWNER)
    except IntegrityError:
        # Created by someone else between the check and the insert.
        raise ValidationError(f"A project named {name!r} already exists.") from None
    return project


def project_rename(*, project: Project, name: str) -> Project:
    if name.strip() == project.name:
        return project
    name = _name_clean(name)
    try:
        with transaction.atomic():
            Project.objects.filter(id=project.id).update(name=name)
    except IntegrityError:
        raise ValidationError(f"A project named {name!r} already exists.") from None
    project.name = name
    return project


def project_settings_update(*, project: Project, timezone: str, price_discount_percent: float) -> Project:
    """The project's time zone (its calendar days) and its discount on list prices."""
    project.timezone = timezone
    project.price_discount_percent = price_discount_percent
    # Runs the field validators too (an IANA zone, 0-100 %).
    project.full_clean(exclude=["name", "members"])
    Project.objects.filter(id=project.id).update(timezone=timezone, price_discount_percent=price_discount_percent)
    return project


def member_invite(*, project: Project, username: str, role: str) -> Membership:
    """Add an existing user to the project by username."""
    if role not in {Membership.OWNER, Membership.MEMBER}:
        raise ValidationError(f"{role!r} is not a role (owner or member).")
    user = get_user_model().objects.filter(username=username.strip()).first()
    if user is None:
        raise ValidationError(f"There is no user named {username.strip()!r} (an admin creates accounts).")
    try:
        with transaction.atomic():
            return Membership.objects.create(project=project, user=user, role=role)
    except IntegrityError:
        raise ValidationError(f"{user.get_username()} is already a member of {project.name}.") from None


@transaction.atomic
def member_remove(*, project: Project, membership_id: int) -> Membership:
    """Remove a member; the last owner stays (a project without one could not be
    managed).  Membership.DoesNotExist for a member of another project."""
    # Lock the project's memberships so two owners removing each other at once
    # cannot both succeed and leave no owner.
    memberships = list(Membership.objects.select_for_update().filter(project=project))
    target = next((m for m in memberships if m.id == membership_id), None)
    if target is None:
        raise Membership.DoesNotExist("No such member in this project.")
    owners = [m for m in memberships if m.role == Membership.OWNER]
    if target.role == Membership.OWNER and len(owners) == 1:
        raise ValidationError("The last owner cannot be removed: make someone else an owner first.")
    target.delete()
    return target
