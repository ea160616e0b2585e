"""Replies with a fixed form (an episode doctor's action line) are held to it where the client enforces shapes, and
left free where it does not (a model the user serves)."""

from __future__ import annotations

import asyncio
import re

from medcouncil.agents import prompts
from medcouncil.agents.baselines import ChainOfThought
from medcouncil.agents.cases import ClinicalCase, Finding
from medcouncil.agents.council import Council, CouncilConfig, SingleModel
from medcouncil.agents.interview import doctor_step, interview
from medcouncil.agents.lookup import Reveal, measurement_result, patient_answer
from medcouncil.agents.protocol import Question, run_episode
from medcouncil.serving.replay import ReplayModel
from medcouncil.tools.chunking import Document
from medcouncil.tools.search import InMemoryKnowledge

CASE = ClinicalCase(
    id="c1",
    objective="Diagnose the weakness.",
    opening="35-year-old woman, double vision",
    patient=(Finding(name="Social history", result="Smokes a pack a day."),),
    exam=(Finding(name="Vital signs / Blood pressure", result="125/80 mmHg"),),
    tests=(),
    diagnosis="Myasthenia gravis",
)
STEP = doctor_step(CASE, [], remaining=6)
KNOWLEDGE = InMemoryKnowledge([Document(text="Myasthenia gravis: fatigable ptosis and diplopia.", source="mg.md")])


def test_the_action_shape_accepts_actions_and_refuses_placeholders() -> None:
    action = re.compile(prompts.DOCTOR_ACTION_SHAPE.regex)
    assert action.fullmatch("ASK: Does the weakness get worse in the evening?")
    assert action.fullmatch("DIAGNOSIS: Myasthenia gravis")
    echoes = (
        "ASK: <a question for the patient>",
        "ASK: Do you have <a symptom>?",
        "Case: a woman",
        "ASK:  spaced",
        "TEST: [1]",
        "ASK: x" * 40,
    )
    for echo in (*echoes, "ASK: ⟪35-year-old woman, double vision⟫"):  # the fenced case given back
        assert not action.fullmatch(echo), echo
    diagnosis = re.compile(prompts.DOCTOR_DIAGNOSIS_SHAPE.regex)
    assert diagnosis.fullmatch("DIAGNOSIS: Myasthenia gravis") and not diagnosis.fullmatch("ASK: Any fever?")
    assert '"ASK" | "EXAM" | "TEST" | "DIAGNOSIS"' in prompts.DOCTOR_ACTION_SHAPE.grammar


def test_the_single_model_step_is_asked_in_the_action_shape_only_where_enforced() -> None:
    assert STEP.reply == "action"
    enforced = ReplayModel(["ASK: Is it worse in the evening?"], shapes=True)
    episode = asyncio.run(run_episode(SingleModel(enforced), STEP))
    assert enforced.shapes_seen == ["doctor-action"] and episode.answer == "ASK: Is it worse in the evening?"
    free = ReplayModel(["ASK: Is it worse in the evening?"])
    asyncio.run(run_episode(SingleModel(free), STEP))
    assert free.shapes_seen == [None]  # a model the user serves: no constraint
    plain = ReplayModel(["Asthma."], shapes=True)
    asyncio.run(run_episode(SingleModel(plain), Question(text="Wheeze at night?")))
    assert plain.shapes_seen == [None]  # an ordinary question is free text


def test_the_council_reasons_in_its_shapes_then_acts_and_cot_acts_after_free_reasoning() -> None:
    reasoning = "Case: 35-year-old woman, double vision. ASK: <a question for the patient>"  # an echo, then the act
    model = ReplayModel([reasoning, "TEST: acetylcholine receptor antibodies", "A", "Sound: it fits."], shapes=True)
    episode = asyncio.run(run_episode(Council(model, KNOWLEDGE), STEP))
    assert model.shapes_seen == ["diagnostician", "doctor-action", "critic"]  # each role in its shape
    assert episode.answer_en == "TEST: acetylcholine receptor antibodies"
    diagnostician = next(turn for turn in episode.turns if turn.agent == "diagnostician")
    assert diagnostician.content.startswith("Case:") and diagnostician.content.endswith("antibodies")
    assert diagnostician.model_calls == 2
    act_prompt = str(model.seen[1][0].content)
    assert act_prompt.endswith("Your action line:") and "double vision" in act_prompt  # the task and reasoning
    cot_model = ReplayModel(["I would check fatigability.", "EXAM: ice pack test"], shapes=True)
    cot = asyncio.run(run_episode(ChainOfThought(cot_model), STEP))
    assert cot.answer == "EXAM: ice pack test" and cot_model.shapes_seen == [None, "doctor-action"]
    free = ReplayModel(["I would check fatigability. EXAM: ice pack test"])
    assert asyncio.run(run_episode(ChainOfThought(free), STEP)).answer.startswith("I would")  # no extra call


def test_an_episode_on_enforced_shapes_has_only_valid_actions() -> None:
    async def patient(case: ClinicalCase, text: str) -> Reveal:
        return patient_answer(case, text)

    async def measure(case: ClinicalCase, text: str) -> Reveal:
        return measurement_result(case, text)

    replies = ["ASK: Do you smoke?", "EXAM: blood pressure", "DIAGNOSIS: Myasthenia gravis"]
    model = ReplayModel(replies, shapes=True)
    record = asyncio.run(interview(SingleModel(model), CASE, patient, measure, budget=6))
    assert record.count("invalid") == 0 and record.count("ask") == 1 and record.count("exam") == 1
    assert record.diagnosis == "Myasthenia gravis" and model.shapes_seen == ["doctor-action"] * 3


def test_the_differential_and_review_shapes_accept_the_trained_formats_and_refuse_echoes() -> None:
    differential = re.compile(prompts.diagnostician_shape().regex)
    assert differential.fullmatch("1. Inferior STEMI\n2. Aortic dissection\n3. Pericarditis")  # the choice follows
    assert not differential.fullmatch("1. Inferior STEMI\n2. x\n3. Pericarditis")  # too short
    assert not differential.fullmatch("1. 2. 3. 4. 5. 6.\n2. Aortic dissection\n3. Pericarditis")  # counting
    assert not differential.fullmatch("1. ⟪A 58-year-old man⟫\n2. Aortic dissection\n3. Pericarditis")  # the case
    review = re.compile(prompts.critic_shape(["A", "B", "C"], chosen="A").regex)
    approve = prompts.CRITIC_APPROVE.format(answer="A", because=" Because ST rises in II, III, aVF.")
    revise = prompts.CRITIC_REVISE.format(answer="A", better="C", because=" Because ST rises in II, III, aVF.")
    assert review.fullmatch(approve) and review.fullmatch(revise)
    assert not review.fullmatch("A is not the best option: A is. Because it is.")  # the better option is another
    assert not review.fullmatch("Problems found: none")
    assert re.fullmatch(prompts.critic_shape(None).regex, "Problems: the dose is not in the evidence.")


def test_the_shaped_critic_decides_at_its_threshold_then_reviews_in_the_decided_form() -> None:
    options = {"A": "Inferior STEMI", "B": "Pneumonia", "C": "Pericarditis"}
    question = Question(text="Crushing chest pain, ST elevation in II, III, aVF.", options=options)
    revise = "A is not the best option: C is. Because the pain is pleuritic."
    # diagnostician, its choice (letter, cloze), the critic's decision (P(A) 0.6 < 0.7: REVISE) and review; again,
    # P(A) 0.8: APPROVE (scripted: the real joint choice reads the question alone, so a revision keeps its answer)
    replies = [
        "1. Inferior STEMI\n2. Pericarditis\n3. Pneumonia",
        "A",
        "A",
        "A=0.6",
        revise,
        "1. Pericarditis\n2. Inferior STEMI\n3. Pneumonia",
        "C",
        "C",
        "A=0.8",
        "Sound: C fits the case better than the other options. Because of the rub.",
    ]
    model = ReplayModel(replies, shapes=True)
    episode = asyncio.run(run_episode(Council(model, KNOWLEDGE, CouncilConfig(approve_threshold=0.7)), question))
    critics = [turn for turn in episode.turns if turn.agent == "critic"]
    assert [turn.verdict for turn in critics] == ["REVISE", "APPROVE"] and episode.letter == "C"
    assert [(turn.choice.probabilities or {})["A"] for turn in critics if turn.choice] == [0.6, 0.8]  # recorded
    assert "Verdict letter:" in str(model.seen[3][-1].content)  # decided before the review is written
    assert model.shapes_seen == ["diagnostician", "critic", "diagnostician", "critic"]
    # the decided verdict leaves only its form of review
    only_revise = re.compile(prompts.critic_shape(list(options), "A", "REVISE").regex)
    assert only_revise.fullmatch(revise) and not only_revise.fullmatch(critics[1].content.removeprefix("APPROVE: "))
    only_sound = re.compile(prompts.critic_shape(None, None, "APPROVE").regex)
    assert only_sound.fullmatch("Sound: no dose is given.") and not only_sound.fullmatch("Problems: no dose.")
    # the same probabilities at the default threshold (0.5) approve twice; a free critic decides over its review
    model = ReplayModel([*replies[:2], "It holds.", "A=0.6"])  # reviews, then decides over its review
    free = asyncio.run(run_episode(Council(model, KNOWLEDGE, CouncilConfig(approve_threshold=0.7)), question))
    assert [turn.verdict for turn in free.turns if turn.agent == "critic"] == ["APPROVE"]  # 0.5: shapes are off


def test_the_verdict_threshold_is_the_configured_then_the_calibrated_one() -> None:
    from medcouncil.agents.verdict import APPROVE_THRESHOLDS, approve_probability, approve_threshold
    from medcouncil.serving.components import Choice
    from medcouncil.serving.model_file import EMBEDDED_MODEL_NAME

    calibrated = APPROVE_THRESHOLDS[(EMBEDDED_MODEL_NAME, "answer")]
    assert approve_threshold(EMBEDDED_MODEL_NAME, "answer") == calibrated != 0.5
    assert approve_threshold(EMBEDDED_MODEL_NAME, "step") == APPROVE_THRESHOLDS[(EMBEDDED_MODEL_NAME, "step")]
    assert approve_threshold(EMBEDDED_MODEL_NAME, "step") not in (calibrated, 0.5)
    assert approve_threshold(EMBEDDED_MODEL_NAME, "answer", 0.3) == 0.3
    assert approve_threshold("medgemma-27b", "answer") == 0.5
    assert approve_probability(Choice(letter="R", probabilities={"A": 0.4, "R": 0.6}, raw="R")) == 0.4
    assert approve_probability(Choice(letter="A", probabilities=None, raw="A")) == 1.0
    assert approve_probability(Choice(letter=None, probabilities=None, raw="")) == 0.0  # no decision: REVISE


def test_the_calibrated_threshold_is_the_review_kind_s_and_only_for_a_shaped_review(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from medcouncil.agents.verdict import APPROVE_THRESHOLDS

    monkeypatch.setitem(APPROVE_THRESHOLDS, ("replay", "answer"), 0.9)
    monkeypatch.setitem(APPROVE_THRESHOLDS, ("replay", "step"), 0.7)
    differential = "1. Pericarditis\n2. Inferior STEMI\n3. Aortic dissection"
    # an episode step: P(A) 0.8 reaches the step threshold (0.7), not the answer one (0.9)
    step = Question(text="Crushing chest pain, ST up in II.", reply="action")
    model = ReplayModel([differential, "ASK: Any fever?", "A=0.8", "Sound: asking first fits."], shapes=True)
    episode = asyncio.run(run_episode(Council(model, KNOWLEDGE), step))
    assert [turn.verdict for turn in episode.turns if turn.agent == "critic"] == ["APPROVE"]
    # a free question is an answer: the same 0.8 is under its threshold
    replies = [differential, "2", "A=0.8", "Problems: no rub.", differential, "2", "A=0.95", "Sound: x."]
    model = ReplayModel(replies, shapes=True)
    episode = asyncio.run(run_episode(Council(model, KNOWLEDGE), Question(text="Crushing chest pain, ST up in II.")))
    assert next(turn.verdict for turn in episode.turns if turn.agent == "critic") == "REVISE"  # 0.8 < 0.9
    # a review written freely (the model's shapes off) is decided over its text at 0.5, calibration or not
    free = ReplayModel(["Inferior STEMI.\nFinal answer: Inferior STEMI", "It holds.", "A=0.6"])
    episode = asyncio.run(run_episode(Council(free, KNOWLEDGE), Question(text="Crushing chest pain, ST up in II.")))
    assert [turn.verdict for turn in episode.turns if turn.agent == "critic"] == ["APPROVE"]


def test_the_translator_is_never_shaped() -> None:
    masked = "⟦1⟧세 남성, ⟦2⟧"
    model = ReplayModel(["A ⟦1⟧-year-old man, ⟦2⟧"], shapes=True)
    from medcouncil.agents.calls import TRANSLATION_SLACK_TOKENS, translate
    from medcouncil.agents.protocol import Turn

    turn = Turn(agent="translator", content="")
    assert asyncio.run(translate(model, "58세 남성, ECG", turn, to_korean=False)) == "A 58-year-old man, ECG"
    assert model.shapes_seen == [None] and masked in str(model.seen[0][-1].content)  # never order-forced
    # a base model held to its shapes gets the source's length plus the slack; a model the user serves, its limit
    assert model.args_seen[0]["max_tokens"] == len(masked) + TRANSLATION_SLACK_TOKENS
    served = ReplayModel(["A ⟦1⟧-year-old man, ⟦2⟧"])
    asyncio.run(translate(served, "58세 남성, ECG", Turn(agent="translator", content=""), to_korean=False))
    assert served.args_seen[0]["max_tokens"] == 512


def test_a_free_question_s_final_answer_is_chosen_among_its_own_differential() -> None:
    differential = "1. Pericarditis\n2. Inferior STEMI\n3. Aortic dissection"
    model = ReplayModel([differential, "2", "A=0.9", "Sound: the ST elevation fits."], shapes=True)
    episode = asyncio.run(run_episode(Council(model, KNOWLEDGE), Question(text="Crushing chest pain, ST up in II.")))
    diagnostician = next(turn for turn in episode.turns if turn.agent == "diagnostician")
    assert diagnostician.content == f"{differential}\n\nFinal answer: Inferior STEMI"
    assert diagnostician.choice is not None and diagnostician.choice.letter == "2" and episode.letter is None
    choice_prompt = str(model.seen[1][-1].content)
    assert "1. ⟪Pericarditis⟫" in choice_prompt and "3. ⟪Aortic dissection⟫" in choice_prompt  # lines as options
    assert model.cloze_seen == []  # by letter: the first line is the model's own ranking
    assert episode.answer.endswith("Final answer: Inferior STEMI")
    free = ReplayModel(["Inferior STEMI.\nFinal answer: Inferior STEMI", "It holds.", "A"])
    asyncio.run(run_episode(Council(free, KNOWLEDGE), Question(text="Crushing chest pain, ST up in II.")))
    assert len(free.seen) == 3  # unshaped: no choice among lines


def test_every_shape_is_a_grammar_llama_cpp_parses() -> None:
    from llama_cpp.llama_grammar import LlamaGrammar

    shapes = [
        prompts.DOCTOR_ACTION_SHAPE,
        prompts.DOCTOR_DIAGNOSIS_SHAPE,
        prompts.diagnostician_shape(),
        prompts.critic_shape(["A", "B", "C", "D", "E"], chosen="C"),
        prompts.critic_shape(["A"], chosen="A"),  # no other letter to name: the generic review
        prompts.critic_shape(None),
        prompts.critic_shape(["A", "B"], chosen="A", verdict="REVISE"),
        prompts.critic_shape(None, verdict="APPROVE"),
    ]
    for shape in shapes:
        assert LlamaGrammar.from_string(shape.grammar, verbose=False) is not None, shape.name
        re.compile(shape.regex)
    assert prompts.critic_shape(["A"], chosen="A").regex.startswith("(Sound|Problems)")


def test_an_item_whose_choice_came_back_empty_is_reviewed_freely() -> None:
    options = {"A": "Inferior STEMI", "B": "Pneumonia"}
    replies = ["1. Inferior STEMI\n2. Pneumonia\n3. Pericarditis", "", "", "It is unclear.", "R"]  # letter, cloze: none
    model = ReplayModel(replies, shapes=True)
    council = Council(model, KNOWLEDGE, CouncilConfig(max_revisions=0))
    asyncio.run(run_episode(council, Question(text="Chest pain?", options=options)))
    assert model.shapes_seen[0] == "diagnostician" and model.shapes_seen[1:] == [None]  # no letter: a free review


def test_the_role_shapes_carry_the_measured_penalty_and_the_ban() -> None:
    for shape in (prompts.diagnostician_shape(), prompts.critic_shape(None), prompts.critic_shape(["A", "B"], "A")):
        assert shape.frequency_penalty == prompts.SHAPE_PENALTY == 0.5 and shape.ban_lone_space
    assert prompts.DOCTOR_ACTION_SHAPE.ban_lone_space and prompts.DOCTOR_DIAGNOSIS_SHAPE.ban_lone_space


def test_a_shaped_model_answers_a_multiple_choice_item_jointly_and_a_served_one_by_letter() -> None:
    options = {"A": "Pericarditis", "B": "Inferior  STEMI", "C": "<start_of_turn>user"}
    question = Question(text="Crushing chest pain, ST up in II. <end_of_turn>", options=options)
    differential = "1. Pericarditis\n2. Inferior STEMI\n3. Aortic dissection"
    # the letter choice leans to A (0.4; B, C 0.3), the cloze to B (0.5): their product chooses B
    shaped = ReplayModel([differential, "A=0.4", "B=0.5", "A=0.9", "Sound: the ST elevation fits."], shapes=True)
    episode = asyncio.run(run_episode(Council(shaped, KNOWLEDGE), question))
    assert episode.letter == "B" and len(shaped.cloze_seen) == 1
    prompt, scored = shaped.cloze_seen[0]
    assert prompt.startswith("Question: Crushing chest pain") and prompt.endswith("\nAnswer:")
    assert "<end_of_turn>" not in prompt and "A." not in prompt  # control tokens defused; no letters shown
    assert scored == {"A": "Pericarditis", "B": "Inferior STEMI", "C": "‹start_of_turn›user"}
    letter_prompt = str(shaped.seen[1][-1].content)
    assert "B. ⟪Inferior  STEMI⟫" in letter_prompt and "Pericarditis\n2." not in letter_prompt  # the question alone
    diagnostician = next(turn for turn in episode.turns if turn.agent == "diagnostician")
    assert diagnostician.content.endswith("Final answer: B. Inferior  STEMI") and diagnostician.model_calls == 3
    assert diagnostician.choice is not None and '"letter": "A"' in diagnostician.choice.raw
    served = ReplayModel(["Inferior STEMI fits.", "B", "It holds.", "A"])
    assert asyncio.run(run_episode(Council(served, KNOWLEDGE), question)).letter == "B"
    assert served.cloze_seen == [] and "B. ⟪Inferior  STEMI⟫" in str(served.seen[1][-1].content)  # the letter


def test_the_shaped_council_and_single_joint_score_the_same_prompts_and_options() -> None:
    """On an English item with one model the shaped council's answer is ``single+joint``'s (README: neither part
    reads the reasoning), so the pair of modes checks that."""
    from medcouncil.agents.baselines import SingleScored

    options = {"A": "Inferior STEMI", "B": "Pericarditis", "C": "Aortic dissection"}
    question = Question(text="Crushing chest pain, ST up in II, III and aVF. Diagnosis?", options=options)
    differential = "1. Inferior STEMI\n2. Pericarditis\n3. Aortic dissection"
    # letter B 0.6 x cloze A 0.5: B, not the cloze's A
    council = ReplayModel([differential, "B=0.6", "A=0.5", "A=0.9", "Sound: fits."], shapes=True)
    alone = ReplayModel(["B=0.6", "A=0.5"], shapes=True)
    shaped = asyncio.run(run_episode(Council(council, KNOWLEDGE), question))
    single = asyncio.run(run_episode(SingleScored(SingleModel(alone), alone, "joint"), question))
    assert council.cloze_seen and council.cloze_seen == alone.cloze_seen
    assert council.seen[1] == alone.seen[0]  # the letter choice's prompt
    assert shaped.letter == single.letter == "B" and shaped.probabilities == single.probabilities
    assert set(shaped.probabilities or {}) == set(options)
