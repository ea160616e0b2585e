"""The mode registry: one declaration per mode, from which everything that names modes derives.

``bench --mode`` and its help, ``--debias``, the MCQA harness's answerers, the episode doctors, the report's colours
and overview notes, the summary's paired comparisons and the speed benchmarks all read :data:`MODES`. Adding a mode
is one :class:`Mode` in :data:`MODES` (and its answerer, in ``agents/``): see the README's "Extending" section.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from medcouncil.serving.common.errors import ConfigError

SC_K = 2
"""Default self-consistency samples per item: measured on the first 30 MedQA items with the embedded model, one
sampled reasoning and its choice cost about 2,000 tokens and the council about 3,900, so k = 2 is the equal-budget
setting (k = 3 cost 6,300, 1.6x the council's)."""

if TYPE_CHECKING:  # the agents are imported when answerers are built: help texts stay light
    from medcouncil.agents.baselines import PriorEstimator
    from medcouncil.agents.build import Answerers
    from medcouncil.agents.council import Council, Gated, SingleModel
    from medcouncil.agents.protocol import Answerer, ChatModel

EPISODE_ASK_TOKENS = 128
"""A doctor's budget per episode action (a question, an examination, a test or the diagnosis)."""


@dataclass
class Setting:
    """What one worker builds its answerers from; the shared parts (the single model, the council) are made once,
    so ``gated`` escalates to the same council the ``council`` mode uses."""

    model: ChatModel
    new_council: Callable[[str], Council]
    """A fresh council on the run's models and knowledge in a structure (``pipeline`` or ``panel``)."""
    budget: int = 256
    """Reasoning baselines' token budget: the diagnostician's."""
    threshold: float = 0.6
    sc_k: int = SC_K
    estimator: PriorEstimator | None = None
    """PriDe's position prior, shared by the workers of a run."""

    @cached_property
    def single(self) -> SingleModel:
        from medcouncil.agents.council import SingleModel

        return SingleModel(self.model)

    @cached_property
    def council(self) -> Council:
        return self.new_council("pipeline")

    @cached_property
    def asker(self) -> SingleModel:
        """The single model playing an episode: short actions."""
        from medcouncil.agents.council import SingleModel

        return SingleModel(self.model, max_tokens=EPISODE_ASK_TOKENS)

    @cached_property
    def gated(self) -> Gated:
        from medcouncil.agents.council import Gated

        return Gated(self.single, self.council, self.threshold)


@dataclass(frozen=True)
class Doctor:
    """How a mode plays a patient episode: who asks (actions), who commits when the case has options, and who
    answers the whole vignette at once (the ``static:`` mode)."""

    asker: Answerer
    decider: Answerer
    static: Answerer


@dataclass(frozen=True)
class Mode:
    """One mode: its name, how its answerer is built, and what reports and commands say of it."""

    name: str
    summary: str
    """One line for ``--mode``'s help and the README."""
    colour: str
    """Its colour in the report's plots."""
    build: Callable[[Setting], Answerer]
    compared_with: tuple[str, ...] = ()
    """Modes it is paired with (McNemar) in summaries, when both ran: this mode first."""
    doctor: Callable[[Setting], Doctor] | None = None
    """How it plays patient episodes; None: it does not."""
    parameters: tuple[str, ...] = ()
    """What its answers depend on: run settings (``threshold``, ``sc_k``, ``prior``) and engine capabilities
    (``cloze``: prompt log-probabilities, checked before the run)."""
    debias: str | None = None
    """Its ``--debias`` name, when it is a debiasing of the single model."""
    note: Callable[[float], str] | None = None
    """Text beside the mode in a report's overview, given the run's gate threshold."""
    free_text: bool = False
    """Whether it writes a free-text answer of its own to a question without options (an arena contestant); the
    debiasings fall back to the single model there, and self-consistency votes on letters."""


def _cot(setting: Setting) -> Answerer:
    from medcouncil.agents.baselines import ChainOfThought

    return ChainOfThought(setting.model, setting.budget)


def _sc(setting: Setting) -> Answerer:
    from medcouncil.agents.baselines import SelfConsistency

    return SelfConsistency(setting.model, setting.sc_k, setting.budget)


def _cyclic(setting: Setting) -> Answerer:
    from medcouncil.agents.baselines import CyclicDebias

    return CyclicDebias(setting.single)


def _cloze(setting: Setting) -> Answerer:
    from medcouncil.agents.baselines import SingleScored

    return SingleScored(setting.single, setting.model, "cloze")


def _joint(setting: Setting) -> Answerer:
    from medcouncil.agents.baselines import SingleScored

    return SingleScored(setting.single, setting.model, "joint")


def _pride(setting: Setting) -> Answerer:
    from medcouncil.agents.baselines import PriDe

    if setting.estimator is None:
        raise ConfigError("mode single+pride needs its prior estimator: build it for the run first")
    return PriDe(setting.single, setting.estimator)


MODES: dict[str, Mode] = {
    mode.name: mode
    for mode in (
        Mode(
            "single",
            "one constrained choice by the model alone",
            "#1f77b4",
            lambda s: s.single,
            doctor=lambda s: Doctor(s.asker, s.asker, s.single),
            free_text=True,
        ),
        Mode(
            "council",
            "translate, retrieve, diagnose, critique, revise, then the constrained choice",
            "#d62728",
            lambda s: s.council,
            compared_with=("single", "cot", "sc", "single+joint"),
            doctor=lambda s: Doctor(s.council, s.council, s.council),
            free_text=True,
        ),
        Mode(
            "gated",
            "the single model first; the council when its top-option probability is under --threshold",
            "#2ca02c",
            lambda s: s.gated,
            compared_with=("single", "council"),
            parameters=("threshold",),
            doctor=lambda s: Doctor(s.asker, s.gated, s.gated),
            note=lambda t: f"gate: top probability < {t}",
            free_text=True,
        ),
        Mode(
            "cot",
            "chain of thought with the diagnostician's budget, then the choice",
            "#9467bd",
            _cot,
            compared_with=("single",),
            free_text=True,
        ),
        Mode(
            "sc",
            "self-consistency: --sc-k reasoning samples, majority vote",
            "#ff7f0e",
            _sc,
            compared_with=("cot",),
            parameters=("sc_k",),
        ),
        Mode(
            "single+cyclic",
            "the single model over cyclic permutations of the options",
            "#17becf",
            _cyclic,
            compared_with=("single",),
            debias="cyclic",
        ),
        Mode(
            "single+pride",
            "the single model debiased by PriDe's estimated position prior",
            "#bcbd22",
            _pride,
            compared_with=("single",),
            parameters=("prior",),
            debias="pride",
        ),
        Mode(
            "single+cloze",
            "the single model by cloze: each option's text scored after the question, no letters shown",
            "#e377c2",
            _cloze,
            compared_with=("single",),
            parameters=("cloze",),
            debias="cloze",
        ),
        Mode(
            "single+joint",
            "the single model by the product of its letter choice and its cloze (how the shaped council answers)",
            "#7f7f7f",
            _joint,
            compared_with=("single", "single+cloze"),
            parameters=("cloze",),
            debias="joint",
        ),
        Mode(
            "panel",
            "the council deliberating as a panel",
            "#8c564b",
            lambda s: s.new_council("panel"),
            compared_with=("council", "cot"),
            free_text=True,
        ),
    )
}
"""Every mode, in the order reports list them."""


def comparisons() -> list[tuple[str, str]]:
    """Every declared pair (mode, compared with), in declaration order."""
    return [(m.name, other) for m in MODES.values() for other in m.compared_with]


def episode_modes() -> list[str]:
    """The modes that play patient episodes."""
    return [name for name, mode in MODES.items() if mode.doctor is not None]


def free_text_modes() -> list[str]:
    """The modes that answer open-ended questions in their own words (arena contestants)."""
    return [name for name, mode in MODES.items() if mode.free_text]


def debias_modes() -> dict[str, str]:
    """``--debias`` name → mode."""
    return {mode.debias: name for name, mode in MODES.items() if mode.debias}


def needs(modes: Sequence[str], parameter: str) -> bool:
    """Whether any of ``modes`` depends on a run setting."""
    return any(parameter in MODES[m].parameters for m in modes if m in MODES)


def build(setting: Setting, modes: Sequence[str]) -> dict[str, Answerer]:
    """One worker's answerers for ``modes``, all on the same model and sharing one council."""
    return {name: MODES[name].build(setting) for name in modes}


def doctors(setting: Setting, modes: Sequence[str]) -> dict[str, Doctor]:
    """One worker's episode doctors for ``modes``."""
    made: dict[str, Doctor] = {}
    for name in modes:
        play = MODES[name].doctor
        if play is None:
            raise ConfigError(f"mode {name} does not play episodes: choose from {', '.join(episode_modes())}")
        made[name] = play(setting)
    return made


def help_text(modes: Sequence[str] | None = None) -> str:
    """``name: summary`` for each mode, for an option's help."""
    return "; ".join(f"{name}: {MODES[name].summary}" for name in (modes or list(MODES)))


def setting_for(
    answerers: Answerers, threshold: float = 0.6, sc_k: int = SC_K, estimator: PriorEstimator | None = None
) -> Setting:
    """A worker's :class:`Setting` on a command's answerers; reasoning baselines get the diagnostician's budget."""
    from medcouncil.agents.roles import DIAGNOSTICIAN

    budget = answerers.config.max_tokens.get(DIAGNOSTICIAN, 256)
    return Setting(answerers.model, answerers.new_council, budget, threshold, sc_k, estimator)
