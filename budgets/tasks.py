"""Celery tasks: thin wrappers taking ids and ISO times.

`budgets.evaluate` runs every BUDGETS_EVALUATE_SECONDS (30) from beat; any
number of workers may run it at once (each alert's row is unique, only the
insert that won sends).  `budgets.deliver` sends one delivery and retries
itself with exponential backoff (the countdown the service returns).
"""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from budgets.services import budgets_evaluate, delivery_attempt
from pricing.services import parse_moment


@shared_task(name="budgets.evaluate", acks_late=True, ignore_result=True)
def evaluate(at_iso: str | None = None) -> int:
    at = parse_moment(at_iso, default=timezone.now())
    return len(budgets_evaluate(at=at).alerts)


@shared_task(bind=True, name="budgets.deliver", acks_late=True, ignore_result=True, max_retries=None)
def deliver(self, delivery_id: int) -> bool:  # type: ignore[no-untyped-def]
    attempt = delivery_attempt(delivery_id=delivery_id)
    if attempt.retry_in is not None:
        raise self.retry(countdown=attempt.retry_in)
    return attempt.sent
