"""The interactive episode loop with a scripted doctor and the lookup patient and measurement agents."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from medcouncil.agents.cases import ClinicalCase, Finding
from medcouncil.agents.interview import interview, parse_action
from medcouncil.agents.lookup import Reveal, measurement_result, patient_answer
from medcouncil.agents.protocol import Episode, Event, Question

CASE = ClinicalCase(
    id="c1",
    objective="Diagnose the weakness.",
    opening="35-year-old woman, double vision",
    patient=(Finding(name="Social history", result="Smokes a pack a day."),),
    exam=(Finding(name="Vital signs / Blood pressure", result="125/80 mmHg"),),
    tests=(Finding(name="Blood tests / Acetylcholine receptor antibodies", result="Elevated", cost=150.0),),
    diagnosis="Myasthenia gravis",
)


class ScriptedDoctor:
    name = "scripted"

    def __init__(self, replies: list[str], letter: str | None = None) -> None:
        self.replies, self.letter = list(replies), letter
        self.questions: list[Question] = []

    async def stream(self, question: Question, history: Sequence[Episode] = ()) -> AsyncIterator[Event]:
        self.questions.append(question)
        letter = self.letter if question.options else None
        yield Episode(question=question, answerer=self.name, answer=self.replies.pop(0), letter=letter)


async def patient(case: ClinicalCase, text: str) -> Reveal:
    return patient_answer(case, text)


async def measure(case: ClinicalCase, text: str) -> Reveal:
    return measurement_result(case, text)


def test_actions_are_read_from_the_first_action_line() -> None:
    assert parse_action("Thinking...\nASK: Do you smoke?\nTEST: CBC") == ("ask", "Do you smoke?")
    assert parse_action("**Diagnosis:** Myasthenia gravis") == ("diagnosis", "Myasthenia gravis")
    assert parse_action("The patient should be examined.") == ("invalid", "The patient should be examined.")
    # An echoed prompt's placeholders are not actions; a real action after them is.
    echo = "Reply with exactly one line, one of:\nASK: <a question for the patient>\nTEST: <the test to order>"
    assert parse_action(echo) == ("invalid", "Reply with exactly one line, one of:")
    assert parse_action(echo + "\nTEST: chest X-ray") == ("test", "chest X-ray")
    assert parse_action("TEST: <the test to order, e.g. complete\nDIAGNOSIS: <your final diagnosis>⟫")[0] == "invalid"


def test_the_doctor_learns_only_what_it_asks_and_commits() -> None:
    doctor = ScriptedDoctor(
        ["ASK: Do you smoke?", "I wonder.", "TEST: acetylcholine receptor antibodies", "DIAGNOSIS: Myasthenia gravis"]
    )
    record = asyncio.run(interview(doctor, CASE, patient, measure, budget=6))
    assert record.committed_early and record.diagnosis == "Myasthenia gravis"
    assert record.count("ask") == 1 and record.count("test") == 1 and record.count("invalid") == 1
    assert record.revealed == ["Social history", "Blood tests / Acetylcholine receptor antibodies"]
    assert record.cost == 150.0 and len(record.doctor_episodes) == 4
    # Each step shows the dialogue so far, replies fenced as data; the unasked blood pressure never appears.
    last = doctor.questions[-1].text
    assert "Patient: ⟪Social history: Smokes a pack a day.⟫" in last and "3 actions are left" in last
    assert all("125/80" not in q.text for q in doctor.questions)


def test_the_budget_forces_a_commitment_and_options_are_a_constrained_choice() -> None:
    case = CASE.model_copy(update={"options": {"A": "Myasthenia gravis", "B": "Stroke"}, "answer": "A"})
    doctor = ScriptedDoctor(["EXAM: blood pressure", "EXAM: blood pressure", "ignored"], letter="A")
    record = asyncio.run(interview(doctor, case, patient, measure, budget=2))
    assert not record.committed_early and record.count("exam") == 2 and record.letter == "A"
    assert record.diagnosis == "Myasthenia gravis" and doctor.questions[-1].options == case.options
    assert "Commit to your final diagnosis now" in doctor.questions[-1].text
    free = ScriptedDoctor(["ASK: anything else?", "DIAGNOSIS: Lambert-Eaton syndrome"])
    assert asyncio.run(interview(free, CASE, patient, measure, budget=1)).diagnosis == "Lambert-Eaton syndrome"


def test_every_doctor_step_carries_the_case_id_for_the_retrievers_guard() -> None:
    doctor = ScriptedDoctor(["ASK: Do you smoke?", "DIAGNOSIS: Myasthenia gravis"])
    asyncio.run(interview(doctor, CASE, patient, measure, budget=3))
    assert [q.item_id for q in doctor.questions] == ["c1", "c1"]
    guard = doctor.questions[0].guard()
    assert guard is not None and guard.item_ids == {"c1"}


def test_a_renamed_repeated_id_still_keeps_its_own_material_out_of_retrieval() -> None:
    from medcouncil.tools.chunking import Document
    from medcouncil.tools.search import InMemoryKnowledge

    knowledge = InMemoryKnowledge(
        [
            Document(
                text="Myasthenia gravis: ptosis worse in the evening; anti-AChR antibodies.",
                source="notes",
                item_id="c1",
            ),
            Document(
                text="Lambert-Eaton: proximal weakness improving with use; VGCC antibodies.",
                source="notes",
                item_id="c2",
            ),
        ]
    )
    renamed = Question(text="Ptosis worse in the evening, anti-AChR antibodies?", item_id="c1#2")
    found = knowledge.search(renamed.text, threshold=-1, k=5, guard=renamed.guard())
    assert found and all(e.item_id != "c1" for e in found)  # the material of "c1" is this item's own too
    guard = Question(text="x", item_id="c1#2").guard()
    assert guard is not None and guard.item_ids == {"c1#2", "c1"}
