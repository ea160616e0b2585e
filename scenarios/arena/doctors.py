"""Episode doctors as arena contestants (``episode:MODE``): the mode plays the patient case as an interactive
encounter (the lookup patient and measurement agents, at most ``budget`` actions, then its diagnosis), and its
answer is the committed diagnosis followed by the encounter, which the judges read as its reasoning."""

from __future__ import annotations

from dataclasses import dataclass

from medcouncil.agents.cases import ClinicalCase
from medcouncil.agents.interview import dialogue, interview
from medcouncil.agents.lookup import Reveal, measurement_result, patient_answer
from medcouncil.agents.patient import Translator
from medcouncil.agents.protocol import Answerer, ChatModel, Episode, Question, Turn

EPISODE_PREFIX = "episode:"
BUDGET = 6
"""Actions per encounter before the doctor must commit (the episode benchmark's budget)."""


async def _patient(case: ClinicalCase, request: str) -> Reveal:
    return patient_answer(case, request)


async def _measurement(case: ClinicalCase, request: str) -> Reveal:
    return measurement_result(case, request)


@dataclass
class EpisodeDoctor:
    """A mode's doctor and committer playing one case at a time."""

    name: str
    asker: Answerer
    decider: Answerer
    model: ChatModel
    """The model that translates a Korean case for the doctor."""
    budget: int = BUDGET

    async def play(self, case: ClinicalCase) -> Episode:
        """The encounter as an episode: the answer is the diagnosis, then the encounter; its cost is the doctor's
        and the translator's."""
        translate = Translator(self.model) if case.language == "ko" else None
        record = await interview(self.asker, case, _patient, _measurement, self.budget, self.decider, translate)
        died = next((e for e in record.doctor_episodes if e.engine_died), None)
        failed = died or next((e for e in record.doctor_episodes if e.error), None)
        diagnosis = record.diagnosis_translated or record.diagnosis
        answer = f"Diagnosis: {diagnosis or '(none)'}\n\nThe encounter:\n{dialogue(record.steps)}"
        turn = Turn(
            agent=self.name,
            content=answer,
            kind="answer",
            prompt_tokens=record.tokens,
            model_calls=record.model_calls,
            model_time_s=record.model_time_s,
        )
        return Episode(
            question=Question(text=case.static_text(), item_id=case.id),
            answerer=self.name,
            answer=answer,
            turns=[turn],
            wall_time_s=record.wall_time_s,
            error=failed.error if failed else None,
            engine_died=died is not None,
        )
