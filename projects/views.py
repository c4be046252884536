"""Self-service: a project's settings page (name, time zone, discount, API keys,
members), and the site's readable API docs.

One page, one view: GET shows the current project's settings; each form POSTs
back to it with an `action` and `?project=NAME`, so a form in a tab opened
before a project switch can never change another project.  Owners change
things; members see the page read-only (a POST from them is a 403); someone
outside the project gets a 404, as for every dashboard page.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from csp.constants import SELF
from csp.decorators import csp_update
from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.staticfiles import finders
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.cache import patch_cache_control
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods
from drf_spectacular.views import SpectacularSwaggerSplitView

from dashboard.views import ProjectChoice, project_choose
from projects import services
from projects.access import may_manage_project, project_role
from projects.forms import (
    ApiKeyCreateForm,
    ApiKeyRevokeForm,
    MemberInviteForm,
    MemberRemoveForm,
    ProjectNameForm,
    ProjectSettingsForm,
    timezone_names,
)
from projects.models import ApiKey, Membership, Project
from projects.selectors import api_key_list, membership_list


def settings_url(project: Project | None) -> str:
    base = reverse("projects:settings")
    return f"{base}?{urlencode({'project': project.name})}" if project else base


def _forms(project: Project | None) -> dict[str, forms.Form]:
    """Every form on the page, unbound (one of them is replaced by the bound
    form that failed, so its errors show where the user typed)."""
    return {
        "create_form": ProjectNameForm(prefix="create"),
        "rename_form": ProjectNameForm(prefix="rename", initial={"name": project.name if project else ""}),
        "settings_form": ProjectSettingsForm(
            initial={
                "timezone": project.timezone if project else "UTC",
                "price_discount_percent": project.price_discount_percent if project else 0,
            }
        ),
        "key_form": ApiKeyCreateForm(prefix="key"),
        "invite_form": MemberInviteForm(prefix="invite"),
    }


def _render(request: HttpRequest, choice: ProjectChoice, *, status: int = 200, **extra: Any) -> HttpResponse:
    project = choice.current
    context: dict[str, Any] = {
        "nav": "settings",
        "project": project,
        "projects": choice.projects,
        "post_url": settings_url(project),
        "timezones": timezone_names(),
        **_forms(project),
    }
    if project is not None:
        context.update(
            role=project_role(user=request.user, project_id=project.id),
            can_manage=may_manage_project(user=request.user, project_id=project.id),
            keys=list(api_key_list(project_id=project.id)),
            memberships=list(membership_list(project_id=project.id)),
        )
        context["owner_count"] = sum(1 for m in context["memberships"] if m.role == Membership.OWNER)
    context.update(extra)
    return render(request, "projects/settings.html", context, status=status)


Handler = Callable[[HttpRequest, ProjectChoice, Project], HttpResponse]


def _invalid(request: HttpRequest, choice: ProjectChoice, form_name: str, form: forms.Form) -> HttpResponse:
    return _render(request, choice, status=400, **{form_name: form})


def _service_error(form: forms.Form, exc: ValidationError, field: str | None = None) -> None:
    for message in exc.messages:
        form.add_error(field, message)


def _rename(request: HttpRequest, choice: ProjectChoice, project: Project) -> HttpResponse:
    form = ProjectNameForm(request.POST, prefix="rename")
    if form.is_valid():
        try:
            services.project_rename(project=project, name=form.cleaned_data["name"])
        except ValidationError as exc:
            _service_error(form, exc, "name")
        else:
            messages.success(request, f"The project is now called {project.name}.")
            return HttpResponseRedirect(settings_url(project))
    return _invalid(request, choice, "rename_form", form)


def _settings_update(request: HttpRequest, choice: ProjectChoice, project: Project) -> HttpResponse:
    form = ProjectSettingsForm(request.POST)
    if form.is_valid():
        try:
            services.project_settings_update(project=project, **form.cleaned_data)
        except ValidationError as exc:
            _service_error(form, exc)
        else:
            messages.success(request, "Saved the time zone and discount.")
            return HttpResponseRedirect(settings_url(project))
    project.refresh_from_db()
    return _invalid(request, choice, "settings_form", form)


def _key_create(request: HttpRequest, choice: ProjectChoice, project: Project) -> HttpResponse:
    form = ApiKeyCreateForm(request.POST, prefix="key")
    if not form.is_valid():
        return _invalid(request, choice, "key_form", form)
    key, raw = services.api_key_issue(project=project, **form.cleaned_data)
    # Rendered in the POST's own response, not stored for a redirect: the raw
    # key exists only in this one page (never cached, see never_cache) and is
    # never shown again.
    return _render(request, choice, status=201, new_key=key, new_key_raw=raw)


def _key_revoke(request: HttpRequest, choice: ProjectChoice, project: Project) -> HttpResponse:
    form = ApiKeyRevokeForm(request.POST)
    if not form.is_valid():
        raise Http404("No such key.")
    try:
        key = services.api_key_revoke(project=project, key_id=form.cleaned_data["key_id"])
    except ApiKey.DoesNotExist:
        raise Http404("No such key in this project.") from None
    messages.success(request, f"Revoked the key {key.name or key.prefix} ({key.prefix}…).")
    return HttpResponseRedirect(settings_url(project))


def _member_invite(request: HttpRequest, choice: ProjectChoice, project: Project) -> HttpResponse:
    form = MemberInviteForm(request.POST, prefix="invite")
    if form.is_valid():
        try:
            membership = services.member_invite(project=project, **form.cleaned_data)
        except ValidationError as exc:
            _service_error(form, exc, "username")
        else:
            messages.success(
                request, f"Added {membership.user.get_username()} as {membership.get_role_display().lower()}."
            )
            return HttpResponseRedirect(settings_url(project))
    return _invalid(request, choice, "invite_form", form)


def _member_remove(request: HttpRequest, choice: ProjectChoice, project: Project) -> HttpResponse:
    form = MemberRemoveForm(request.POST)
    if not form.is_valid():
        raise Http404("No such member.")
    try:
        removed = services.member_remove(project=project, membership_id=form.cleaned_data["membership_id"])
    except Membership.DoesNotExist:
        raise Http404("No such member in this project.") from None
    except ValidationError as exc:
        return _render(request, choice, status=400, members_error=" ".join(exc.messages))
    messages.success(request, f"Removed {removed.user.get_username()} from {project.name}.")
    if removed.user_id == request.user.pk:
        return HttpResponseRedirect(reverse("projects:settings"))
    return HttpResponseRedirect(settings_url(project))


ACTIONS: dict[str, Handler] = {
    "project_rename": _rename,
    "project_settings": _settings_update,
    "key_create": _key_create,
    "key_revoke": _key_revoke,
    "member_invite": _member_invite,
    "member_remove": _member_remove,
}


def _project_create(request: HttpRequest, choice: ProjectChoice) -> HttpResponse:
    form = ProjectNameForm(request.POST, prefix="create")
    if form.is_valid():
        try:
            project = services.project_create(name=form.cleaned_data["name"], owner=request.user)  # type: ignore[arg-type]
        except ValidationError as exc:
            _service_error(form, exc, "name")
        else:
            messages.success(request, f"Created {project.name}; you are its owner. Create an API key below.")
            return HttpResponseRedirect(settings_url(project))
    return _invalid(request, choice, "create_form", form)


@login_required
@never_cache
@require_http_methods(["GET", "POST"])
def settings_page(request: HttpRequest) -> HttpResponse:
    choice = project_choose(request)
    if request.method == "GET":
        return _render(request, choice)
    action = request.POST.get("action", "")
    if action == "project_create":
        # Any signed-in user may start a project (and owns it).
        return _project_create(request, choice)
    handler = ACTIONS.get(action)
    if handler is None:
        return _render(request, choice, status=400, page_error=f"Unknown action {action!r}.")
    # A change names its project in the URL (see the module docstring).
    if not request.GET.get("project") or choice.current is None:
        raise Http404("No such project.")
    if not may_manage_project(user=request.user, project_id=choice.current.id):
        raise PermissionDenied("Only the project's owners change its settings.")
    return handler(request, choice, choice.current)


class ApiDocsView(SpectacularSwaggerSplitView):
    """Swagger UI for /api/schema/, its assets from drf-spectacular-sidecar.

    The split view serves its start-up script as a separate request (no inline
    script); our template drops the stock template's inline <style>.  Public,
    like /api/schema/ itself: the API's shape is in the open-source repository
    anyway, and an SDK user holding only an API key (no dashboard login) is
    who reads it; the calls it tries still need `Authorization: Bearer`.
    """

    template_name = "projects/api_docs.html"


# Swagger UI draws its icons as data: URIs; only this page allows them.
api_docs = csp_update({"img-src": [SELF, "data:"]})(ApiDocsView.as_view())


@require_http_methods(["GET", "HEAD"])
def favicon(request: HttpRequest) -> HttpResponse:
    """/favicon.ico, which browsers ask for on every site whatever the page links."""
    path = finders.find("favicon.ico")
    if not path:
        raise Http404("No favicon.")
    with open(path, "rb") as handle:  # type: ignore[arg-type]
        response = HttpResponse(handle.read(), content_type="image/x-icon")
    patch_cache_control(response, public=True, max_age=24 * 3600)
    return response
