"""Which project a read request is about."""

from __future__ import annotations

from rest_framework.exceptions import NotFound
from rest_framework.request import Request

from projects.auth import KeyPrincipal
from projects.models import Membership
from projects.selectors import project_list_for_user


def request_project_id(request: Request) -> int:
    """An API key sees only its own project; a logged-in user picks one of
    theirs with ?project=NAME (default: the first they may see)."""
    user = request.user
    if isinstance(user, KeyPrincipal):
        return user.project_id
    projects = project_list_for_user(user=user)
    name = request.query_params.get("project")
    if name:
        projects = projects.filter(name=name)
    project_id = projects.order_by("name").values_list("id", flat=True).first()
    if project_id is None:
        raise NotFound("No such project.")
    return project_id


PRICE_PERMISSIONS = ("pricing.add_price", "pricing.change_price")


def may_edit_pricing(request: Request) -> bool:
    """An admin API key (its own project's prices only), or a user holding
    the Django permissions to add and change prices (global or any project's)."""
    user = request.user
    if isinstance(user, KeyPrincipal):
        return user.is_admin
    return may_edit_global_prices(user)


def may_edit_global_prices(user: object) -> bool:
    if isinstance(user, KeyPrincipal) or not getattr(user, "is_authenticated", False):
        return False
    return bool(user.is_staff and user.has_perms(PRICE_PERMISSIONS))  # type: ignore[attr-defined]


def project_role(*, user: object, project_id: int) -> str | None:
    """The user's role in a project ("owner" / "member"), or None."""
    if not getattr(user, "is_authenticated", False) or isinstance(user, KeyPrincipal):
        return None
    return (
        Membership.objects.filter(project_id=project_id, user_id=user.pk)  # type: ignore[attr-defined]
        .values_list("role", flat=True)
        .first()
    )


def may_manage_project(*, user: object, project_id: int) -> bool:
    """Owners change a project's settings, keys and members; so does a superuser
    (who can do all of it in the admin anyway).  Members and other staff only read."""
    if getattr(user, "is_superuser", False) and not isinstance(user, KeyPrincipal):
        return True
    return project_role(user=user, project_id=project_id) == Membership.OWNER
