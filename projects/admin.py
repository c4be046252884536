from __future__ import annotations

from urllib.parse import parse_qs

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.utils.html import format_html

from projects.models import ApiKey, Membership, Project
from projects.views import settings_url

admin.site.site_header = "llmobserve"
admin.site.site_title = "llmobserve admin"
admin.site.index_title = "Projects, keys, prices and users"


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0


class ApiKeyInline(admin.TabularInline):
    model = ApiKey
    extra = 0
    fields = ["prefix", "name", "is_admin", "revoked", "created_at", "last_used_at"]
    readonly_fields = ["prefix", "created_at", "last_used_at"]
    can_delete = True

    def has_add_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        # A key is created on the project's Settings page (or by `manage.py
        # create_api_key`), which shows the raw key once; see ProjectAdmin.settings_link.
        return False


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "timezone", "created_at", "settings_link"]
    search_fields = ["name"]
    readonly_fields = ["settings_link"]
    inlines = [MembershipInline, ApiKeyInline]

    @admin.display(description="Settings page")
    def settings_link(self, obj: Project) -> str:
        if obj.pk is None:
            return "—"
        return format_html('<a href="{}">Create and revoke API keys, manage members</a>', settings_url(obj))


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["prefix", "project", "name", "is_admin", "revoked", "created_at", "last_used_at"]
    list_filter = ["is_admin", "revoked", "project"]
    readonly_fields = ["prefix", "key_hash", "created_at", "last_used_at"]

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context=None) -> HttpResponse:  # type: ignore[no-untyped-def, override]
        """ "Add" sends the user to the project's Settings page: a key is shown
        once, on the page that created it, which the admin's forms cannot do."""
        filters = parse_qs(request.GET.get("_changelist_filters", ""))
        project_id = (filters.get("project__id__exact") or [""])[0]
        project = Project.objects.filter(id=project_id).first() if project_id.isdigit() else None
        messages.info(
            request,
            "API keys are created on a project's Settings page, which shows the new key once.",
        )
        return HttpResponseRedirect(settings_url(project))
