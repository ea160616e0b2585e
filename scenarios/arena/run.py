"""Running an arena: every contestant answers every item once (journaled), then every judge judges every pairing.

The contestants are answerers the harness knows (a free-text mode on a model: ``council``, ``single@my-adapter``);
each answers an item as it would a chat question (``Question`` without options, the item's id guarding retrieval
against its own material). Judging starts once both answers of a pair exist; a pair a judge failed on (no valid
choice, an engine error) is recorded in ``errors.jsonl`` and judged again on resume.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from medcouncil.agents.arena_judge import NoReference, PairJudge
from medcouncil.agents.protocol import Answerer, Question, run_episode
from medcouncil.scenarios.arena.doctors import EpisodeDoctor
from medcouncil.scenarios.arena.human import Quit, Skipped
from medcouncil.scenarios.arena.items import ArenaItem
from medcouncil.scenarios.arena.journal import AnswerLine, ArenaJournal, ArenaManifest, ErrorLine, JudgementLine
from medcouncil.serving.common.errors import ConfigError, EngineDiedError, first_line

REFERENCE_JUDGES = {"reference"}
"""Judges that need an item's reference answer: items without one are not theirs to judge."""
GIVE_UP_AFTER = 8
"""Failures in a row after which the run stops (resumable): an endpoint that fails every request."""


@dataclass
class Tally:
    answered: int = 0
    judged: int = 0
    failed: int = 0
    no_reference: int = 0
    stopped: str | None = None
    in_a_row: dict[str, int] = field(default_factory=dict)
    """Failures in a row per contestant (or judge): one dead replica among live ones still trips the stop."""

    def failure(self, who: str, message: str) -> None:
        self.failed += 1
        self.in_a_row[who] = self.in_a_row.get(who, 0) + 1
        if self.in_a_row[who] >= GIVE_UP_AFTER:
            self.stopped = f"{who}: {self.in_a_row[who]} failures in a row, the last: {message}"

    def success(self, who: str) -> None:
        self.in_a_row[who] = 0


def missing_answers(manifest: ArenaManifest, items: list[ArenaItem], journal: ArenaJournal) -> list[tuple[str, str]]:
    """(item id, contestant) pairs not answered yet, item by item: only the contestants of the item's pairings (a
    sampled pairing asks no answer it will not judge)."""
    done = {(a.item_id, a.contestant) for a in journal.answers()}
    missing = []
    for item in items:
        paired = {c for pair in manifest.config.pairings(item.id) for c in pair}
        missing += [(item.id, c) for c in manifest.config.contestants if c in paired and (item.id, c) not in done]
    return missing


async def answer_all(
    manifest: ArenaManifest,
    items: list[ArenaItem],
    journal: ArenaJournal,
    contestants: Mapping[str, Answerer | EpisodeDoctor],
    advance: Callable[[], None] = lambda: None,
    tally: Tally | None = None,
) -> Tally:
    """Answer what is missing; an engine that died stops the run (raised), other failures are journaled.

    Raises:
        ConfigError: an episode doctor given an item that is no patient case.
    """
    tally = tally or Tally()
    by_id = {item.id: item for item in items}
    for item_id, contestant in missing_answers(manifest, items, journal):
        item, player = by_id[item_id], contestants[contestant]
        if isinstance(player, EpisodeDoctor) and item.case is None:
            raise ConfigError(f"contestant {contestant}: item {item_id} is not a patient case: it cannot be played")
        try:
            if isinstance(player, EpisodeDoctor):
                assert item.case is not None
                episode = await player.play(item.case)
            else:
                episode = await run_episode(player, Question(text=item.prompt, item_id=item.id))
        except EngineDiedError:
            raise
        except Exception as error:  # a bug in one answer must not lose the run: journaled, tried again on resume
            message = first_line(error)
            journal.add_error(ErrorLine(item_id=item_id, stage="answer", who=contestant, error=message))
            tally.failure(contestant, message)
        else:
            if episode.engine_died:
                raise EngineDiedError(episode.error or "the engine died")
            if episode.error:
                journal.add_error(ErrorLine(item_id=item_id, stage="answer", who=contestant, error=episode.error))
                tally.failure(contestant, episode.error)
            else:
                journal.add_answer(
                    AnswerLine(
                        item_id=item_id,
                        contestant=contestant,
                        answer=episode.answer,
                        model_calls=episode.model_calls,
                        prompt_tokens=episode.prompt_tokens,
                        completion_tokens=episode.completion_tokens,
                        wall_time_s=round(episode.wall_time_s, 3),
                    )
                )
                tally.answered += 1
                tally.success(contestant)
        advance()
        if tally.stopped:
            break
    return tally


def missing_judgements(
    manifest: ArenaManifest, items: list[ArenaItem], journal: ArenaJournal, judge: str
) -> list[tuple[ArenaItem, str, str]]:
    """(item, first, second) pairings whose two answers exist and that ``judge`` has not judged yet; a judge that
    needs a reference (:data:`REFERENCE_JUDGES`) has nothing to judge on an item without one."""
    answered = {(a.item_id, a.contestant) for a in journal.answers()}
    done = {(j.item_id, j.first, j.second) for j in journal.judgements() if j.judge == judge}
    return [
        (item, first, second)
        for item in items
        if item.references or judge not in REFERENCE_JUDGES
        for first, second in manifest.config.pairings(item.id)
        if (item.id, first) in answered and (item.id, second) in answered and (item.id, first, second) not in done
    ]


async def judge_all(
    manifest: ArenaManifest,
    items: list[ArenaItem],
    journal: ArenaJournal,
    judge: PairJudge,
    advance: Callable[[], None] = lambda: None,
    tally: Tally | None = None,
) -> Tally:
    """Judge every pairing not judged yet by ``judge``; items without a reference are passed over by a judge that
    needs one (counted)."""
    tally = tally or Tally()
    answers = {(a.item_id, a.contestant): a.answer for a in journal.answers()}
    for item, first, second in missing_judgements(manifest, items, journal, judge.name):
        try:
            judged = await judge.judge(
                item.prompt,
                item.references,
                answers[(item.id, first)],
                answers[(item.id, second)],
                key=f"{item.id}:{first}:{second}",
            )
        except Quit:
            tally.stopped = "stopped by the judge (Q): arena --resume continues"
            break
        except Skipped:
            journal.add_judgement(
                JudgementLine(
                    item_id=item.id,
                    first=first,
                    second=second,
                    judge=judge.name,
                    outcome="tie",
                    orders=["S"],
                    consistent=True,
                    skipped=True,
                )
            )
            advance()
            continue
        except NoReference:  # a reference that normalises to nothing (punctuation only)
            tally.no_reference += 1
            advance()
            continue
        except EngineDiedError:
            raise
        except Exception as error:  # JudgeFailed, an engine error, a bug: journaled, judged again on resume
            message = first_line(error)
            journal.add_error(ErrorLine(item_id=item.id, stage="judge", who=judge.name, error=message))
            tally.failure(judge.name, message)
        else:
            journal.add_judgement(
                JudgementLine(
                    item_id=item.id,
                    first=first,
                    second=second,
                    judge=judge.name,
                    outcome=judged.outcome,
                    orders=judged.orders,
                    consistent=judged.consistent,
                    reason=judged.reason,
                )
            )
            tally.judged += 1
            tally.success(judge.name)
        advance()
        if tally.stopped:
            break
    return tally
