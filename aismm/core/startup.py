"""What our own processes (the ``aismm`` command, the hooks) do first, to start fast.

Standard library only: importing this loads nothing else.
"""

from __future__ import annotations

import sys
import types

__all__ = ["skip_plugin_scan"]

_LOADER = "pydantic.plugin._loader"  # the module whose get_plugins() pydantic asks


def skip_plugin_scan() -> None:
    """For our own entry points only (the CLI, the hooks), called before any model is built:
    pydantic finds no plugins, as with ``PYDANTIC_DISABLE_PLUGINS=__all__``, without importing
    ``importlib.metadata`` and scanning every installed distribution to look for them (~15 ms
    of each process). Child processes and library users are untouched (no environment
    variable is set); a no-op when pydantic has already loaded its plugin loader."""
    if _LOADER not in sys.modules:
        loader = types.ModuleType(_LOADER, "no pydantic plugins (aismm.core.startup)")
        loader.__dict__["get_plugins"] = tuple  # get_plugins() -> (): no plugin
        sys.modules[_LOADER] = loader
