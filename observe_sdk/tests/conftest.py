"""Fixtures for the llmobserve SDK tests (no Django needed).

The helpers live in ``llmo_testkit.py`` (a unique module name, so these tests
coexist with the repository's other test suites under one pytest run)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from llmo_testkit import (  # noqa: E402,F401
    _clean_state,
    collector,
    oa_async_client,
    oa_client,
    obs,
    pinecone_server,
    upstream,
)
