"""Idempotent wrap/unwrap of ``module:Class.method`` targets with wrapt."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any

import wrapt

logger = logging.getLogger("llmobserve")


class Patcher:
    """Keeps the (class, attribute, original) of everything it wrapped so
    ``unpatch_all`` restores the originals exactly."""

    def __init__(self) -> None:
        self._applied: list[tuple[Any, str, Any, Any]] = []

    @property
    def applied(self) -> bool:
        return bool(self._applied)

    def patch(self, module: str, path: str, wrapper: Callable[..., Any]) -> bool:
        try:
            mod = importlib.import_module(module)
        except Exception:
            return False
        try:
            owner: Any = mod
            parts = path.split(".")
            for p in parts[:-1]:
                owner = getattr(owner, p)
            attr = parts[-1]
            if attr not in getattr(owner, "__dict__", {}):
                return False  # inherited / absent in this version
            original = owner.__dict__[attr]
            if isinstance(original, wrapt.FunctionWrapper) and getattr(original, "_self_llmobserve", False):
                return False  # already ours
            fw = wrapt.FunctionWrapper(original, wrapper)
            fw._self_llmobserve = True  # type: ignore[attr-defined]
            setattr(owner, attr, fw)
            self._applied.append((owner, attr, original, fw))
            return True
        except Exception:
            logger.debug("llmobserve: could not wrap %s.%s", module, path, exc_info=True)
            return False

    def unpatch_all(self) -> None:
        while self._applied:
            owner, attr, original, fw = self._applied.pop()
            try:
                if owner.__dict__.get(attr) is fw:
                    setattr(owner, attr, original)
            except Exception:  # pragma: no cover
                logger.debug("llmobserve: could not unwrap %s", attr, exc_info=True)
