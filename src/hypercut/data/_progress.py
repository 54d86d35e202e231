"""Progress bars for the data tools (rich, which the package depends on)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

_T = TypeVar("_T")


def progress(items: Iterable[_T], total: int, description: str, enabled: bool = True) -> Iterator[_T]:
    """Iterate over ``items`` with a rich progress bar (plain iteration when ``enabled`` is False)."""
    if not enabled:
        yield from items
        return
    from rich.progress import track

    yield from track(items, total=total, description=description, transient=False)
