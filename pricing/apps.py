from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _load_registry_when_empty(sender, **kwargs):  # type: ignore[no-untyped-def]
    # "Loaded on first migrate": only when no price exists yet, so a later
    # migrate never overwrites prices a user edited in the admin.
    from pricing.models import Price
    from pricing.services import price_registry_load

    using = kwargs.get("using", "default")
    if not Price.objects.using(using).exists():
        price_registry_load(using=using)


class PricingConfig(AppConfig):
    name = "pricing"
    verbose_name = "Pricing registry"

    def ready(self) -> None:
        post_migrate.connect(_load_registry_when_empty, sender=self)
