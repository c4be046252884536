"""Everything the README (and docs/semantic_sections.md) tells a user to run or set exists.

Parsed from the text: every `make TARGET` is a rule of the Makefile, every
`manage.py COMMAND` a management command, every environment variable
(backticked ALL_CAPS names, and NAME=value in code blocks) is read by the
server, the SDK, the seed or docker-compose, every local link and image
exists, and every insight threshold quoted matches insights/detectors.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.core.management import get_commands

from insights import detectors

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
GUIDE = (ROOT / "docs" / "semantic_sections.md").read_text()
DOCS = README + "\n" + GUIDE
# Backticked ALL_CAPS words that are not environment variables.
NOT_ENV = {"GET", "POST", "PUT", "SPEC", "JSON", "API", "SDK", "URL"}
# SQL words, OpenTelemetry enum values and Django settings named in the README.
NOT_ENV |= {"DELETE", "RETURNING", "VACUUM", "EMBEDDING", "ERROR", "DATABASE_ROUTERS"}
# The operating system's own.
OS_ENV = {"PATH"}


def makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([a-z][a-z0-9-]*)\s*:(?!=)", text, re.M))


def env_var_sources() -> str:
    """The text of everything that reads environment (or make) variables."""
    paths = [
        ROOT / "Makefile",
        ROOT / "llmobserve_site" / "settings.py",
        ROOT / "scripts" / "seed.py",
        ROOT / "docker-compose.yml",
        ROOT / "Dockerfile",
        *sorted((ROOT / "observe_sdk" / "llmobserve").rglob("*.py")),
    ]
    return "\n".join(p.read_text() for p in paths)


def named_env_vars(text: str) -> set[str]:
    backticked = set(re.findall(r"`([A-Z][A-Z0-9_]{2,})`", text))
    assigned = set()
    for block in re.findall(r"```(?:bash|sh)?\n(.*?)```", text, re.S):
        assigned |= set(re.findall(r"(?:^|\s)([A-Z][A-Z0-9_]{2,})=", block, re.M))
    return (backticked | assigned) - NOT_ENV - OS_ENV


def test_the_two_commands_come_first() -> None:
    quick = README.split("## Quick start", 1)[1]
    assert quick.index("make run") < quick.index("make test") < quick.index("make seed")


@pytest.mark.parametrize("target", sorted(set(re.findall(r"\bmake ([a-z][a-z0-9-]*)", DOCS))))
def test_make_targets_exist(target: str) -> None:
    assert target in makefile_targets(), f"README names `make {target}`, the Makefile has no such target"


@pytest.mark.parametrize("command", sorted(set(re.findall(r"manage\.py ([a-z_]+)", DOCS))))
def test_management_commands_exist(command: str) -> None:
    assert command in get_commands(), f"README names `manage.py {command}`, which does not exist"


@pytest.mark.parametrize("name", sorted(named_env_vars(DOCS)))
def test_environment_variables_are_read(name: str) -> None:
    assert re.search(rf"\b{name}\b", env_var_sources()), f"README names {name}, which nothing reads"


def test_every_server_and_sdk_variable_is_documented() -> None:
    settings_text = (ROOT / "llmobserve_site" / "settings.py").read_text()
    server = set(re.findall(r"""(?:environ\.get|env_bool|env_int|env_list)\(\s*["']([A-Z0-9_]+)["']""", settings_text))
    sdk_text = "\n".join(p.read_text() for p in (ROOT / "observe_sdk" / "llmobserve").rglob("*.py"))
    sdk = set(re.findall(r"""(?:environ\.get|_env_true)\(\s*["']([A-Z0-9_]+)["']""", sdk_text))
    assert server and sdk
    missing = (server | sdk) - named_env_vars(README)
    assert not missing, f"not documented in the README: {missing}"


def test_local_links_and_images_exist() -> None:
    for doc, text in ((ROOT / "README.md", README), (ROOT / "docs" / "semantic_sections.md", GUIDE)):
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if "://" in target:
                continue
            assert (doc.parent / target).exists(), f"{doc.name} links to missing {target}"


def test_scripts_named_exist() -> None:
    for script in set(re.findall(r"\b(scripts/[a-z_]+\.(?:py|sh))", DOCS)):
        assert (ROOT / script).exists(), script


def test_insight_thresholds_match_the_detectors() -> None:
    table = README.split("## Insights", 1)[1].split("\n## ", 1)[0]
    rows = {line.split("|")[1].strip(" `"): line for line in table.splitlines() if line.startswith("| `")}
    d = detectors

    def n(value: float) -> str:
        return f"{value:g}"

    spike = rows["section_spike"]
    assert f"**{n(d.SPIKE_RATIO)}×**" in spike
    assert f"{d.SPIKE_MIN_WINDOW_RUNS} runs in the window and {d.SPIKE_MIN_BASELINE_RUNS} in the baseline" in spike
    assert f"${d.SPIKE_MIN_WINDOW_COST_USD:.2f}" in spike
    ineff = rows["model_inefficiency"]
    assert f"**{d.INEFFICIENCY_SIMPLE_MEDIAN_OUTPUT}**" in ineff
    assert f"≥ {d.INEFFICIENCY_MIN_CHEAPER_CALLS} calls" in ineff
    assert f"{d.INEFFICIENCY_MIN_CALLS} calls to the model" in ineff
    assert f"${d.INEFFICIENCY_MIN_SAVINGS_USD:.2f}" in ineff
    bloat = rows["token_bloat"]
    assert f"**{n(d.BLOAT_RATIO)}×**" in bloat
    assert f"{d.BLOAT_MIN_WINDOW_CALLS} calls in the window and {d.BLOAT_MIN_BASELINE_CALLS} in the baseline" in bloat
    assert f"≥ {d.BLOAT_MIN_WINDOW_MEAN_INPUT} input tokens" in bloat
    retry = rows["retry_loop"]
    assert f"**{d.RETRY_MAX_CALLS}**" in retry and f"{d.RETRY_MIN_RUNS} runs" in retry
    assert f"from ${n(d.HIGH_SAVINGS_USD)}" in table and f"from ${n(d.MEDIUM_SAVINGS_USD)}" in table


def test_sdk_examples_use_the_real_api() -> None:
    import llmobserve

    used = set()
    for block in re.findall(r"```python\n(.*?)```", DOCS, re.S):
        for names in re.findall(r"from llmobserve import ([\w, ]+)", block):
            used |= {name.strip() for name in names.split(",")}
    assert used >= {"observe", "section", "trace", "run", "flush"}
    assert all(hasattr(llmobserve, name) for name in used), used
