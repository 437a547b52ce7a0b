"""What every command shares: the hub it works on, output, and reading small files."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from aismm.core.errors import UsageError

if TYPE_CHECKING:
    from aismm.infra.hub import Hub

__all__ = ["ASSESS_WORKERS", "Context", "assessment_workers", "context_of", "emit", "hub_from",
           "read_text"]


class Context:
    """What every command needs: where the hub is."""

    def __init__(self, hub: str | None) -> None:
        self.hub_arg = hub

    def hub(self) -> Hub:
        # imported here: the hub's models are not needed to parse the command line or print help
        from aismm.infra.hub import Hub, find_hub

        return Hub(find_hub(self.hub_arg))


def context_of(ctx: click.Context) -> Context:
    """The :class:`Context` the ``aismm`` group put on the root click context."""
    obj: Context = ctx.find_root().obj
    return obj


def hub_from(ctx: click.Context) -> Hub:
    """The hub the command works on (``--hub`` / ``$AISMM_HUB``)."""
    return context_of(ctx).hub()


def emit(data: object, as_json: bool, text: str | None = None) -> None:
    """Print JSON (stable keys) or the human text."""
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
    elif text is not None:
        click.echo(text)


def read_text(path: Path, option: str, limit: int = 1 << 20) -> str:
    """A small UTF-8 text file named on the command line, or one UsageError naming it."""
    try:
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise UsageError(f"{option} {path}: cannot read ({exc.strerror or exc}); check the "
                         "path") from exc
    if len(data) > limit:
        raise UsageError(f"{option} {path}: larger than {limit} bytes; pass the right file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{option} {path}: not UTF-8 text (byte {exc.start}); pass a text "
                         "file") from exc


#: Warm sandbox workers while agents are assessed: one per parallel benchmark task
#: (aismm.services.market runs up to four at once); AISMM_WARM_WORKERS sets another number
#: (0: every run one-shot).
ASSESS_WORKERS = 4


@contextmanager
def assessment_workers(wanted: bool = True) -> Iterator[None]:
    """Warm sandbox workers for the block (when ``wanted``): an assessment is many sandboxed
    runs, and a warm worker imports the programs once and forks each run into the same
    isolation (about a third less CPU); a worker that cannot start means one-shot runs."""
    if not wanted:
        yield
        return
    from aismm.infra import warm

    with warm.pool(size=None if os.environ.get("AISMM_WARM_WORKERS") else ASSESS_WORKERS):
        yield
