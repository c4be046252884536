from __future__ import annotations

from django import template

from dashboard import formatting

register = template.Library()

register.filter("usd", formatting.usd)
register.filter("rate", formatting.rate)
register.filter("tokens", formatting.tokens)
register.filter("duration", formatting.duration)
register.filter("cost_breakdown", formatting.cost_breakdown)
register.filter("unpriced_units", formatting.unpriced_units)
