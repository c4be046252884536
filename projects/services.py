from __future__ import annotations

from django.db import transaction

from projects.models import ApiKey, Project


@transaction.atomic
def api_key_create(*, project_name: str, is_admin: bool = False, name: str = "") -> tuple[ApiKey, str]:
    """Create a key (and its project when new); returns the row and the raw key."""
    project, _ = Project.objects.get_or_create(name=project_name)
    return ApiKey.generate(project=project, name=name, is_admin=is_admin)
