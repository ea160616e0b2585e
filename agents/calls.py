"""Model calls the roles and the baselines share: a streamed reply accounted in its turn, the constrained choice and
the action after a reasoning, translation with protected values."""

from __future__ import annotations

import json
import math
import time
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import Any, Literal

from autogen_core.models import CreateResult, LLMMessage, RequestUsage, SystemMessage, UserMessage

from medcouncil.agents import prompts
from medcouncil.agents.preserve import (
    english_pattern,
    placed_text,
    protect,
    protected_terms,
    restore_spans,
    untranslated,
)
from medcouncil.agents.protocol import ChatModel, Turn
from medcouncil.serving.components import Choice
from medcouncil.serving.dialects import Shape
from medcouncil.tools.mcqa import cloze_options, format_cloze, format_mcqa
from medcouncil.tools.untrusted import neutralise


async def stream_model(
    model: ChatModel, messages: Sequence[LLMMessage], turn: Turn, **create_args: Any
) -> AsyncIterator[str]:
    """Stream a model's reply into ``turn``: text, usage, one model call, and only the time spent waiting on it."""
    iterator = aiter(model.stream(messages, **create_args))
    parts: list[str] = []
    turn.model_calls += 1
    while True:
        started = time.perf_counter()
        try:
            item = await anext(iterator)
        except StopAsyncIteration:
            break
        finally:
            turn.model_time_s += time.perf_counter() - started
        if isinstance(item, CreateResult):
            turn.prompt_tokens += item.usage.prompt_tokens
            turn.completion_tokens += item.usage.completion_tokens
            if not parts and isinstance(item.content, str):
                parts.append(item.content)
        else:
            parts.append(item)
            yield item
    turn.content = (turn.content + "".join(parts)).strip()


async def choose(model: ChatModel, messages: Sequence[LLMMessage], letters: Sequence[str], turn: Turn) -> Choice:
    """The constrained choice among ``letters``, accounted in ``turn``."""
    return await _accounted(model.choose(messages, letters), turn)


async def choose_letter(
    model: ChatModel, case: str, options: dict[str, str], turn: Turn, reasoning: str = ""
) -> Choice:
    """The constrained letter with the one choice template (:data:`~medcouncil.tools.mcqa.MCQA_TEMPLATE`, the
    reasoning in its slot; without one, the single model's own prompt), accounted in ``turn``."""
    prompt = format_mcqa(case, options, reasoning=reasoning)
    return await choose(model, [UserMessage(content=prompt, source="user")], list(options), turn)


async def choose_by_cloze(model: ChatModel, prompt: str, options: dict[str, str], turn: Turn) -> Choice:
    """The option the model finds likeliest after ``prompt`` (:meth:`ChatModel.cloze`), accounted in ``turn``."""
    return await _accounted(model.cloze(prompt, cloze_options(options)), turn)


async def _accounted(call: Awaitable[Choice], turn: Turn) -> Choice:
    started = time.perf_counter()
    try:
        choice = await call
    finally:
        turn.model_time_s += time.perf_counter() - started
    turn.model_calls += choice.calls
    turn.prompt_tokens += choice.usage.prompt_tokens
    turn.completion_tokens += choice.usage.completion_tokens
    return choice


def final_answer(letter: str | None, options: dict[str, str]) -> str:
    """:data:`prompts.FINAL_ANSWER` for a chosen option letter (``none`` when the model chose none)."""
    return prompts.FINAL_ANSWER.format(answer=f"{letter}. {options[letter]}" if letter else "none")


Scoring = Literal["letter", "cloze", "joint"]
"""How a multiple-choice answer is read from the model: its constrained ``letter`` after the reasoning; the ``cloze``
(each option's text after :data:`~medcouncil.tools.mcqa.CLOZE_TEMPLATE`, no letters shown); or ``joint``, the
product of the two distributions, each read from the question alone (:func:`choose_jointly`)."""

SHAPED_SCORING: Scoring = "joint"
"""How the shaped council (a base model held to role shapes, the embedded default) answers a multiple-choice item.
The 270M's letter choice follows a position prior ("A"), its cloze a length-normalised likelihood; each alone lost
one test file (README, "Why the shaped council answers jointly"): on MedQA-300 letter 28.3%, cloze 24.0%, joint
27.0%; on MMLU-medical letter 21.7%, cloze 31.7%, joint 30.7%; on MedMCQA test items 1,001-1,200 (in no reported
set) letter 31.5%, cloze 27.0%, joint 30.0%."""


def joint_choice(letter: Choice, cloze: Choice) -> Choice:
    """The product of a letter choice's and a cloze's distributions over the same options, renormalised: the option
    likeliest under both (a product of experts). Where one side has no probabilities (an engine without
    log-probabilities) or no option keeps mass in both, the cloze decides, or the letter where the cloze chose none.
    Its cost is both calls'; ``raw`` keeps both sides (JSON), so a run can be split into its parts again."""
    usage = RequestUsage(
        prompt_tokens=letter.usage.prompt_tokens + cloze.usage.prompt_tokens,
        completion_tokens=letter.usage.completion_tokens + cloze.usage.completion_tokens,
    )
    raw = json.dumps(
        {
            "letter": letter.letter,
            "letter_probabilities": letter.probabilities,
            "cloze": cloze.letter,
            "cloze_probabilities": cloze.probabilities,
            "cloze_raw": cloze.raw,
        }
    )
    combined = multiply(letter.probabilities or {}, cloze.probabilities or {})
    best = max(combined, key=lambda k: combined[k]) if combined else cloze.letter or letter.letter
    return Choice(
        letter=best,
        probabilities=combined or cloze.probabilities or letter.probabilities,
        raw=raw,
        usage=usage,
        cached=letter.cached and cloze.cached,
        calls=letter.calls + cloze.calls,
    )


def multiply(first: dict[str, float], second: dict[str, float]) -> dict[str, float]:
    """The renormalised product of two distributions, over every key of either (in log space, so small values do
    not underflow; a key without mass in both gets 0); empty when no key has mass in both."""
    keys = [*first, *(k for k in second if k not in first)]
    logs = {k: math.log(first[k]) + math.log(second[k]) for k in keys if min(first.get(k, 0.0), second.get(k, 0.0)) > 0}
    if not logs:
        return {}
    top = max(logs.values())
    weights = {k: math.exp(v - top) for k, v in logs.items()}
    total = sum(weights.values())
    return {k: weights.get(k, 0.0) / total for k in keys}


async def choose_jointly(model: ChatModel, case: str, options: dict[str, str], turn: Turn) -> Choice:
    """:func:`joint_choice` of the letter choice with the single model's prompt (the question alone,
    :data:`~medcouncil.tools.mcqa.MCQA_TEMPLATE`) and the cloze after the question, accounted in ``turn``."""
    letter = await choose_letter(model, case, options, turn)
    cloze = await choose_by_cloze(model, format_cloze(case), options, turn)
    return joint_choice(letter, cloze)


async def choose_after_reasoning(
    model: ChatModel,
    case: str,
    options: dict[str, str],
    turn: Turn,
    by_text: bool = False,
    scoring: Scoring = "letter",
) -> str:
    """The choice after ``turn``'s reasoning, read as ``scoring`` says (:data:`Scoring`): the constrained letter with
    the one choice template (reasoning in its slot), the option likeliest after
    :data:`~medcouncil.tools.mcqa.CLOZE_TEMPLATE`, or both read from the question alone and multiplied; sets
    ``turn.choice``, appends the final answer line to ``turn.content`` and returns the line (for streaming).
    ``by_text``: the line names the chosen option's text only (a choice among the reasoning's own diagnoses)."""
    if scoring == "joint":
        # The shaped council's diagnostician on a multiple-choice item (DiagnosticianAgent): neither the letter (a
        # position prior) nor the cloze (a length-normalised likelihood) alone, their product (SHAPED_SCORING).
        turn.choice = await choose_jointly(model, case, options, turn)
    elif scoring == "cloze":
        prompt = format_cloze(case, reasoning=turn.content if CLOZE_READS_REASONING else "")
        turn.choice = await choose_by_cloze(model, prompt, options, turn)
    else:
        turn.choice = await choose_letter(model, case, options, turn, reasoning=turn.content)
    letter = turn.choice.letter
    line = prompts.FINAL_ANSWER.format(answer=options[letter]) if by_text and letter else final_answer(letter, options)
    turn.content = f"{turn.content}\n\n{line}".strip()
    return f"\n\n{line}"


CLOZE_READS_REASONING = False
"""Whether the cloze prompt holds the reasoning before the question. Measured on the first 40 MMLU-medical items
answered by the shaped council (Gemma 3 270M base, each item's recorded differential, per character): the question
alone 12/40 right, the differential before the question 11/40, between question and answer 8/40, the letter choice
6/40; on 274 items the question alone 35.4% against the letter's 20.1% (README, "Role shapes")."""

REPLY_SHAPES = {"action": prompts.DOCTOR_ACTION_SHAPE, "diagnosis": prompts.DOCTOR_DIAGNOSIS_SHAPE}
"""The enforced form of each kind of :attr:`Question.reply` that has one."""


def reply_shape(question_reply: str, model: ChatModel) -> Shape | None:
    """The shape a reply is held to: one for an action or diagnosis step when the model's client enforces shapes."""
    return REPLY_SHAPES.get(question_reply) if model.shapes else None


async def act_after_reasoning(model: ChatModel, task: str, shape: Shape, turn: Turn) -> str:
    """The action line ``turn``'s reasoning leads to, generated in ``shape`` (:data:`prompts.DOCTOR_ACT`) and appended
    to ``turn.content`` (the transcript keeps both); returns the line, which is the step's answer."""
    reasoning = turn.content
    prompt = prompts.DOCTOR_ACT.format(task=task, reasoning=neutralise(reasoning) or prompts.NOTHING_YET)
    turn.content = ""
    async for _ in stream_model(model, [UserMessage(content=prompt, source="user")], turn, shape=shape, max_tokens=64):
        pass
    line = turn.content
    turn.content = f"{reasoning}\n\n{line}".strip()
    return line


def untranslated_turn(turn: Turn) -> bool:
    """Whether a translator's turn passed its source on untranslated (:data:`prompts.UNTRANSLATED`)."""
    return turn.content.startswith(prompts.UNTRANSLATED.split("(")[0])


TRANSLATION_SLACK_TOKENS = 48
"""Held to its shapes (a base model, :attr:`ChatModel.shapes`), a translation's token budget is at most the source's
length in characters plus this: no language needs more tokens than characters, and a model that gives its prompt
back stops there rather than at the role's limit. A model the user serves keeps the role's limit."""


async def translate(
    model: ChatModel, text: str, turn: Turn, to_korean: bool, terms_from: str = "", max_tokens: int = 512
) -> str:
    """``text`` into Korean (the Latin terms of ``terms_from`` and every value pass through unchanged) or into English
    (every Latin-script span and value does), streamed into ``turn``; placeholders are restored before anything is
    shown, and a value that could not be placed stays listed at the end. A reply that is no translation
    (:func:`untranslated`: empty, the prompt given back, still Korean, most values dropped) is not passed on: ``text``
    itself is returned, and the turn says why (:data:`prompts.UNTRANSLATED`)."""
    if to_korean:
        masked, spans = protect(text, english_pattern(protected_terms(terms_from)))
    else:
        masked, spans = protect(text)
    system = prompts.TRANSLATE_TO_KOREAN if to_korean else prompts.TRANSLATE_TO_ENGLISH
    messages: list[LLMMessage] = [SystemMessage(content=system), UserMessage(content=masked, source="user")]
    # Never shaped: a shape forcing the placeholders into source order would place values where Korean word order
    # puts others (silently, as restore_spans trusts in-order placeholders); the fallback below catches an echo.
    budget = min(max_tokens, len(masked) + TRANSLATION_SLACK_TOKENS) if model.shapes else max_tokens
    async for _ in stream_model(model, messages, turn, max_tokens=budget):
        pass
    restored = restore_spans(turn.content, spans)
    translated = restored.text
    reason = untranslated(placed_text(translated), f"{system}\n{masked}", spans, restored.missing, to_korean)
    if reason is None:
        turn.content = translated
        return translated
    # No translation is better than a wrong one: the council reads the source, every value in place, and says so.
    turn.content = prompts.UNTRANSLATED.format(reason=reason, attempt=neutralise(translated)[:300])
    return text
