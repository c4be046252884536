from django.core.management.base import BaseCommand, CommandError

from pricing.services import REGISTRY_PATH, PricingError, price_registry_load


class Command(BaseCommand):
    help = (
        "Load a pricing registry (default pricing/registry.json). "
        "Rows are upserted by provider, model and effective_from."
    )

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("path", nargs="?", default=str(REGISTRY_PATH))

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        try:
            count = price_registry_load(path=options["path"])
        except FileNotFoundError:
            raise CommandError(f"no such file: {options['path']}") from None
        except (ValueError, KeyError, PricingError) as exc:
            raise CommandError(f"{options['path']} is not a pricing registry: {exc}") from None
        self.stdout.write(f"Loaded {count} prices from {options['path']}")
