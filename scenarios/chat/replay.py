"""Scripted scenarios: a YAML list of user turns with checks, replayed through the council or the single model.

```yaml
name: English asthma case
mode: council            # or single
language: auto           # auto, ko, en
turns:
  - user: "A 24-year-old has episodic wheeze..."
    options: {A: Asthma, B: Pneumonia}   # optional: a multiple-choice item
    expect:
      mentions: [asthma]                 # the final answer mentions each (case-insensitive)
      chooses: A                         # the constrained choice is this letter
      translator_ran: true               # the translator spoke (or, with false, did not)
      min_sources: 1                     # at least N sources cited by the retriever
      keeps_terms: [salbutamol, "62%"]   # these reach the council's English case unchanged
```
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from medcouncil.agents.calls import untranslated_turn
from medcouncil.agents.preserve import placed_text
from medcouncil.agents.protocol import Episode
from medcouncil.serving.common.yamlfile import load_yaml


class Expect(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mentions: list[str] = Field(default_factory=list)
    chooses: str | None = None
    translator_ran: bool | None = None
    translated: bool | None = None
    """Every translator turn of the turn gave a translation (none passed its source on untranslated)."""
    min_sources: int | None = Field(default=None, ge=0)
    keeps_terms: list[str] = Field(default_factory=list)


class ScenarioTurn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str = Field(min_length=1)
    options: dict[str, str] | None = None
    expect: Expect = Field(default_factory=Expect)

    @model_validator(mode="after")
    def _choosable(self) -> ScenarioTurn:
        """A ``chooses:`` check names one of the turn's options (told before the replay, not after it)."""
        wanted = self.expect.chooses
        if wanted is not None and wanted not in (self.options or {}):
            given = f"its options are {', '.join(self.options)}" if self.options else "the turn has no options"
            raise ValueError(f"expect.chooses: {wanted!r} can never be chosen: {given}")
        return self


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    mode: Literal["council", "single"] = "council"
    language: Literal["auto", "ko", "en"] = "auto"
    turns: list[ScenarioTurn] = Field(min_length=1)


class CheckResult(BaseModel):
    turn: int
    check: str
    passed: bool
    detail: str


def load_scenario(path: Path) -> Scenario:
    """Read and validate a scenario.

    Raises:
        ConfigError: ``FILE:LINE: what is wrong`` for missing files, invalid YAML and invalid fields.
    """
    return load_yaml(path, Scenario, "scenario")


def check_turn(number: int, expect: Expect, episode: Episode) -> list[CheckResult]:
    results: list[CheckResult] = []

    def add(name: str, passed: bool, detail: str) -> None:
        results.append(CheckResult(turn=number, check=name, passed=passed, detail=detail))

    if episode.error:
        add("no error", False, episode.error)
    answer = episode.answer.lower()
    for needle in expect.mentions:
        add(f"mentions {needle!r}", needle.lower() in answer, episode.answer[:120])
    if expect.chooses is not None:
        add(f"chooses {expect.chooses}", episode.letter == expect.chooses, f"chose {episode.letter}")
    if expect.translator_ran is not None:
        ran = any(turn.agent == "translator" for turn in episode.turns)
        add(f"translator {'ran' if expect.translator_ran else 'skipped'}", ran == expect.translator_ran, f"ran={ran}")
    if expect.translated is not None:
        failed = [t.content.split("\n")[0] for t in episode.turns if t.agent == "translator" and untranslated_turn(t)]
        add(f"{'' if expect.translated else 'not '}translated", (not failed) == expect.translated, "; ".join(failed))
    if expect.min_sources is not None:
        cited = len(episode.sources)
        add(f"at least {expect.min_sources} sources", cited >= expect.min_sources, f"{cited} cited")
    placed = placed_text(episode.case_en)  # a value only listed as "not placed" was not kept in the text
    for term in expect.keeps_terms:
        add(f"keeps {term!r}", term in placed, placed[:120] or "(empty translation)")
    return results
