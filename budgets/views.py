"""The Budgets dashboard page, and the budget form: owners change, members read, outsiders get 404.

GET /dashboard/budgets/ lists budgets (progress and projection), channels and
the alert history; the history is also an htmx fragment (`#history`).
Writes are POSTs (CSRF on) that redirect back, except creating a channel,
which answers with the page itself: the webhook's signing secret is shown in
that one response and never again.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseForbidden
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from budgets.inputs import InputError, budget_input_of, budget_input_parse, channel_input_parse
from budgets.models import Budget, Channel
from budgets.selectors import budget_status_list, channel_list, delivery_list, may_edit_budgets, scope_options
from budgets.services import budget_create, budget_delete, budget_update, channel_create, channel_delete
from budgets.services import channel_test_send as channel_test_create
from dashboard.views import project_choose
from projects.models import Project
from projects.selectors import project_list_for_user


def _page_url(project: Project | None) -> str:
    url = reverse("budgets:page")
    return f"{url}?{urlencode({'project': project.name})}" if project else url


def _context(request: HttpRequest, nav_project: Any) -> dict[str, Any]:
    return {
        "nav": "budgets",
        "project": nav_project.current,
        "projects": nav_project.projects,
    }


def _page_context(request: HttpRequest, project: Project, **extra: Any) -> dict[str, Any]:
    now = timezone.now()
    statuses = budget_status_list(project=project, at=now)
    return {
        "statuses": statuses,
        "channels": channel_list(project_id=project.id),
        "deliveries": delivery_list(project_id=project.id, limit=50),
        "may_edit": may_edit_budgets(user=request.user, project_id=project.id),
        "channel_kinds": Channel.KINDS,
        "severities": Channel.SEVERITIES,
        "digests": Channel.DIGESTS,
        "page_url": _page_url(project),
        "project_tz": project.timezone,
        **extra,
    }


@login_required
@require_GET
def budgets_page(request: HttpRequest) -> HttpResponse:
    choice = project_choose(request)
    context = _context(request, choice)
    template = "budgets/budgets.html"
    if choice.current is not None:
        context.update(_page_context(request, choice.current))
        htmx = getattr(request, "htmx", None)
        if htmx and htmx.target == "history":
            template += "#history"
    response = render(request, template, context)
    patch_vary_headers(response, ["HX-Request", "HX-Target"])
    return response


def _project_of(request: HttpRequest, project_id: int) -> Project:
    """A project the user may see, or 404 (an outsider learns nothing)."""
    project = project_list_for_user(user=request.user).filter(id=project_id).first()
    if project is None:
        raise Http404("No such budget or channel.")
    return project


def _budget_for(request: HttpRequest, budget_id: int) -> Budget:
    budget = Budget.objects.filter(id=budget_id).first()
    if budget is None:
        raise Http404("No such budget.")
    budget.project = _project_of(request, budget.project_id)
    return budget


def _channel_for(request: HttpRequest, channel_id: int) -> Channel:
    channel = Channel.objects.filter(id=channel_id).first()
    if channel is None:
        raise Http404("No such channel.")
    channel.project = _project_of(request, channel.project_id)
    return channel


def _forbidden() -> HttpResponse:
    return HttpResponseForbidden("Only the project's owners change budgets and channels.")


def _form_data(post: Any) -> dict[str, Any]:
    key = (post.get("attribute_key") or "").strip()
    return {
        "name": post.get("name", ""),
        "amount_usd": post.get("amount_usd", ""),
        "period": post.get("period", ""),
        "mode": post.get("mode", ""),
        "thresholds": post.get("thresholds", ""),
        "channels": post.getlist("channels"),
        "scope": {
            "section": post.get("section") or None,
            "model": post.get("model") or None,
            "service": post.get("service") or None,
            "attribute": {"key": key, "value": post.get("attribute_value", "")} if key else None,
        },
    }


@login_required
@require_http_methods(["GET", "POST"])
def budget_form(request: HttpRequest, budget_id: int | None = None) -> HttpResponse:
    """New budget (?project=NAME) or edit one."""
    budget = _budget_for(request, budget_id) if budget_id is not None else None
    if budget is not None:
        project = budget.project
        choice = project_choose(request)
    else:
        choice = project_choose(request)
        if choice.current is None:
            raise Http404("No project.")
        project = choice.current
    if not may_edit_budgets(user=request.user, project_id=project.id):
        return _forbidden()
    errors: dict[str, list[str]] = {}
    values: dict[str, Any]
    if budget is not None:
        values = _values_of(budget_input_of(budget, [c.id for c in budget.channels.all()]))
    else:
        values = {"period": "day", "mode": "soft", "thresholds": "50, 80, 100", "channels": []}
    if request.method == "POST":
        data = _form_data(request.POST)
        try:
            if budget is None:
                created = budget_create(project=project, data=budget_input_parse(data), user=request.user)
                messages.success(request, f"Budget {created.name!r} created.")
            else:
                base = budget_input_of(budget, [c.id for c in budget.channels.all()])
                budget_update(budget=budget, data=budget_input_parse(data, base=base))
                messages.success(request, f"Budget {budget.name!r} saved.")
            return redirect(_page_url(project))
        except InputError as exc:
            errors = exc.errors
            values = {**_values_of_post(request.POST)}
    context = {
        "nav": "budgets",
        "project": project,
        "projects": choice.projects,
        "budget": budget,
        "values": values,
        "errors": errors,
        "periods": Budget.PERIODS,
        "modes": Budget.MODES,
        "channels": channel_list(project_id=project.id),
        "options": scope_options(project_id=project.id, since=timezone.now().date() - dt.timedelta(days=30)),
        "page_url": _page_url(project),
    }
    return render(request, "budgets/budget_form.html", context, status=400 if errors else 200)


def _values_of(data: Any) -> dict[str, Any]:
    return {
        "name": data.name,
        "amount_usd": f"{data.amount_usd:g}",
        "period": data.period,
        "mode": data.mode,
        "thresholds": ", ".join(str(t) for t in data.thresholds),
        "section": data.section or "",
        "model": data.model or "",
        "service": data.service or "",
        "attribute_key": data.attribute_key or "",
        "attribute_value": data.attribute_value or "",
        "channels": [str(c) for c in data.channel_ids],
    }


def _values_of_post(post: Any) -> dict[str, Any]:
    names = ("name", "amount_usd", "period", "mode", "thresholds", "section", "model", "service")
    values = {name: post.get(name, "") for name in names}
    values["attribute_key"] = post.get("attribute_key", "")
    values["attribute_value"] = post.get("attribute_value", "")
    values["channels"] = post.getlist("channels")
    return values


@login_required
@require_POST
def budget_delete_view(request: HttpRequest, budget_id: int) -> HttpResponse:
    budget = _budget_for(request, budget_id)
    if not may_edit_budgets(user=request.user, project_id=budget.project_id):
        return _forbidden()
    budget_delete(budget=budget)
    messages.success(request, f"Budget {budget.name!r} deleted.")
    return redirect(_page_url(budget.project))


@login_required
@require_POST
def channel_create_view(request: HttpRequest) -> HttpResponse:
    choice = project_choose(request)
    project = choice.current
    if project is None:
        raise Http404("No project.")
    if not may_edit_budgets(user=request.user, project_id=project.id):
        return _forbidden()
    context = _context(request, choice)
    try:
        data = channel_input_parse(request.POST.dict())
        channel, secret = channel_create(project=project, data=data, user=request.user)
    except InputError as exc:
        context.update(_page_context(request, project, channel_errors=exc.errors, channel_values=request.POST.dict()))
        return render(request, "budgets/budgets.html", context, status=400)
    context.update(_page_context(request, project, created_channel=channel, signing_secret=secret))
    response = render(request, "budgets/budgets.html", context)
    response["Cache-Control"] = "no-store"  # the secret is in this page, once
    return response


@login_required
@require_POST
def channel_test_view(request: HttpRequest, channel_id: int) -> HttpResponse:
    channel = _channel_for(request, channel_id)
    if not may_edit_budgets(user=request.user, project_id=channel.project_id):
        return _forbidden()
    delivery = channel_test_create(channel=channel)
    messages.success(request, f"Test #{delivery.id} queued for {channel.name}; see the alert history below.")
    return redirect(_page_url(channel.project) + "#history")


@login_required
@require_POST
def channel_delete_view(request: HttpRequest, channel_id: int) -> HttpResponse:
    channel = _channel_for(request, channel_id)
    if not may_edit_budgets(user=request.user, project_id=channel.project_id):
        return _forbidden()
    channel_delete(channel=channel)
    messages.success(request, f"Channel {channel.name!r} deleted.")
    return redirect(_page_url(channel.project))
