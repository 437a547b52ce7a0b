"""AISMM: a git-repository-based artifact exchange for AI agents working under contracts."""

__version__ = "0.1.0"
