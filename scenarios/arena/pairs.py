"""Preference pairs from an arena run, for ``finetune --method dpo``: a pair for each judgement with a winner (a
judge model's pair whose two orders agreed, a person's choice, or the reference judge's match), the item's question
as the prompt. A pair judged by several judges is kept once (the first winner in the journal); ties and skips give
none."""

from __future__ import annotations

from pathlib import Path

from medcouncil.serving.common.errors import ConfigError
from medcouncil.serving.training.data import Message
from medcouncil.serving.training.preference import PreferenceExample


def arena_pairs(directory: Path) -> list[PreferenceExample]:
    """Raises: ConfigError: not an arena run, or no judgement with a winner in it."""
    from medcouncil.scenarios.arena.journal import ArenaJournal, read_manifest

    read_manifest(directory)
    journal = ArenaJournal(directory)
    items = {item.id: item for item in journal.items()}
    answers = {(a.item_id, a.contestant): a.answer for a in journal.answers()}
    pairs: list[PreferenceExample] = []
    seen: set[tuple[str, ...]] = set()
    for judgement in journal.judgements():
        if judgement.skipped or judgement.outcome == "tie" or not judgement.consistent:
            continue
        first, second = judgement.first, judgement.second
        winner, loser = (first, second) if judgement.outcome == "first" else (second, first)
        key = (judgement.item_id, *sorted((winner, loser)))
        chosen, rejected = answers.get((judgement.item_id, winner)), answers.get((judgement.item_id, loser))
        if key in seen or not chosen or not rejected or not chosen.strip() or not rejected.strip():
            continue
        if chosen.strip() == rejected.strip():
            continue
        seen.add(key)
        pairs.append(
            PreferenceExample(
                prompt=(Message(role="user", content=items[judgement.item_id].prompt),),
                chosen=chosen,
                rejected=rejected,
                source=f"{directory}:{judgement.item_id}:{judgement.judge}",
            )
        )
    if not pairs:
        raise ConfigError(f"{directory}: no judgement with a winner (ties and skips make no preference pair)")
    return pairs
