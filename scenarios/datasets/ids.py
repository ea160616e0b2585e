"""Item ids of a run: one item per id, whatever the file (a dataset's samples, patient cases, arena items)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, Self, TypeVar


class _Identified(Protocol):
    """An item of a run (a :class:`Sample`, a patient case, an arena item): keyed by its id, copied with a new one."""

    @property
    def id(self) -> str: ...

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self: ...


ItemT = TypeVar("ItemT", bound=_Identified)


def unique_ids(items: list[ItemT]) -> tuple[list[ItemT], list[str]]:
    """Every item keyed by its own id: a repeated id becomes ``ID#2``, ``ID#3``... in file order (deterministic, so a
    resumed run finds the same ids). Without this the second item would never be answered, and stay pending."""
    seen: dict[str, int] = {}
    unique: list[ItemT] = []
    renamed: list[str] = []
    taken = {item.id for item in items}
    for item in items:
        count = seen.get(item.id, 0) + 1
        seen[item.id] = count
        if count == 1:
            unique.append(item)
            continue
        new_id = f"{item.id}#{count}"
        while new_id in taken:
            count += 1
            new_id = f"{item.id}#{count}"
        taken.add(new_id)
        renamed.append(new_id)
        unique.append(item.model_copy(update={"id": new_id}))
    return unique, renamed


def print_renamed(renamed: Sequence[str], what: str = "item") -> None:
    """Warn on stderr of the items renamed by :func:`unique_ids` (the first five)."""
    from rich.markup import escape

    from medcouncil.serving.common.console import err_console

    if renamed:
        shown = ", ".join(renamed[:5]) + (" …" if len(renamed) > 5 else "")
        err_console.print(
            f"[warning]{len(renamed)} {what}{'s repeat' if len(renamed) > 1 else ' repeats'} an earlier one's id: "
            f"renamed {escape(shown)}[/]",
            soft_wrap=True,
        )
