from django.core.management.base import BaseCommand, CommandError

from projects.services import api_key_create


class Command(BaseCommand):
    help = "Create an API key for a project (created when new). The key is printed once, alone on the last line."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("--project", required=True, help="project name")
        parser.add_argument("--admin", action="store_true", help="the key may also PUT /pricing")
        parser.add_argument("--name", default="", help="a label for the key")

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        name = options["project"].strip()
        if not name or len(name) > 100:
            raise CommandError("--project must be 1 to 100 characters")
        key, raw = api_key_create(project_name=name, is_admin=options["admin"], name=options["name"])
        kind = "admin key" if key.is_admin else "key"
        self.stdout.write(
            f"Created {kind} {key.prefix}… for project {key.project.name!r}. It is shown once; store it now:"
        )
        self.stdout.write(raw)
