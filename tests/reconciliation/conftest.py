"""Shared pieces: a fake admin API on loopback, and the job run against it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest

from reconciliation.fake_admin import FAKE_KEY, FakeAdminAPI, Rates, Traffic
from reconciliation.openai_admin import AdminConfig
from reconciliation.services import ImportResult, openai_bill_import

TODAY = dt.date(2026, 11, 28)
D1, D2, D3 = dt.date(2026, 11, 25), dt.date(2026, 11, 26), dt.date(2026, 11, 27)
# Published list prices, USD per 1M tokens (input, output, cached input).
RATES = {
    "gpt-4o": Rates(input=2.50, output=10.00, cached_input=1.25),
    "gpt-4o-mini": Rates(input=0.15, output=0.60, cached_input=0.075),
    "gpt-4.1": Rates(input=2.00, output=8.00, cached_input=0.50),
    "text-embedding-3-small": Rates(input=0.02),
}


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def fake_admin() -> Iterator[Any]:
    """A factory: fake_admin(traffic, **knobs) starts a fake and stops it afterwards."""
    started: list[FakeAdminAPI] = []

    def make(traffic: list[Traffic], **knobs: Any) -> FakeAdminAPI:
        knobs.setdefault("rates", RATES)
        fake = FakeAdminAPI(traffic=traffic, **knobs).start()
        started.append(fake)
        return fake

    yield make
    for fake in started:
        fake.close()


def run_import(fake: FakeAdminAPI, *, today: dt.date = TODAY, since: dt.date | None = None, **kw: Any) -> ImportResult:
    sleeps = kw.pop("sleep", Sleeps())
    return openai_bill_import(
        since=since, today=today, config=AdminConfig(key=FAKE_KEY, base_url=fake.base_url), sleep=sleeps, **kw
    )
