from django.contrib import admin

from projects.models import ApiKey, Membership, Project


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0


class ApiKeyInline(admin.TabularInline):
    model = ApiKey
    extra = 0
    fields = ["prefix", "name", "is_admin", "revoked", "created_at"]
    readonly_fields = ["prefix", "created_at"]
    can_delete = True

    def has_add_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        # Keys are minted by `manage.py create_api_key`, which shows the raw key once.
        return False


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "created_at"]
    search_fields = ["name"]
    inlines = [MembershipInline, ApiKeyInline]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["prefix", "project", "name", "is_admin", "revoked", "created_at"]
    list_filter = ["is_admin", "revoked", "project"]
    readonly_fields = ["prefix", "key_hash", "created_at"]

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False
