from django.contrib import admin

from pricing.models import Price


@admin.register(Price)
class PriceAdmin(admin.ModelAdmin):
    list_display = [
        "provider",
        "model",
        "input_per_1m",
        "cached_input_per_1m",
        "output_per_1m",
        "per_1m_read_units",
        "per_1m_write_units",
        "per_request",
        "cheaper_alternative",
        "effective_from",
    ]
    list_filter = ["provider"]
    search_fields = ["model", "cheaper_alternative"]
    ordering = ["provider", "model", "-effective_from"]
    date_hierarchy = "effective_from"
