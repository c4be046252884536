from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _sync_registry(sender, **kwargs):  # type: ignore[no-untyped-def]
    # Every migrate adds the shipped rows not stored yet, and never touches a
    # stored row, so prices a user edited in the admin stay as edited.
    from pricing.services import price_registry_sync

    price_registry_sync(using=kwargs.get("using", "default"))


class PricingConfig(AppConfig):
    name = "pricing"
    verbose_name = "Pricing registry"

    def ready(self) -> None:
        post_migrate.connect(_sync_registry, sender=self)
