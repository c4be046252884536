from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Case, QuerySet, Value, When

from projects.models import ApiKey, Membership, Project


def project_list_for_user(*, user: AbstractBaseUser | AnonymousUser) -> QuerySet[Project]:
    """Projects a logged-in user may see: all for staff, else their memberships."""
    if not user.is_authenticated:
        return Project.objects.none()
    if getattr(user, "is_staff", False):
        return Project.objects.all()
    return Project.objects.filter(membership__user_id=user.pk)


def api_key_list(*, project_id: int) -> QuerySet[ApiKey]:
    """A project's keys, live ones first, newest first (the hash is never shown)."""
    return ApiKey.objects.filter(project_id=project_id).order_by("revoked", "-created_at", "-id")


def membership_list(*, project_id: int) -> QuerySet[Membership]:
    """A project's members, owners first, then by username."""
    return (
        Membership.objects.filter(project_id=project_id)
        .select_related("user")
        .order_by(
            Case(When(role=Membership.OWNER, then=Value(0)), default=Value(1)),
            "user__username",
        )
    )
