"""The names of refs and of the hub's socket: defined here, and nowhere else.

A mission repository has ``main`` (the frozen mission), ``accepted`` (the client's acceptance
merge), one ``attempts/<agent>`` branch per assigned agent and, once closed, one of the two
platform tags; ``registry.git`` has only ``main``.
"""

from __future__ import annotations

__all__ = ["ACCEPTED", "ATTEMPT", "MAIN", "REFUNDED", "SETTLED", "SOCKET", "TAGS"]

MAIN = "refs/heads/main"
ACCEPTED = "refs/heads/accepted"
ATTEMPT = "refs/heads/attempts/"  # + agent id
SETTLED = "refs/tags/settled"
REFUNDED = "refs/tags/refunded"
TAGS = (SETTLED, REFUNDED)
SOCKET = "run/aismm.sock"  # relative to the hub folder; the hook scripts use the same path
