"""Role-shaped training data: each item becomes conversations in the council's own prompts (``agents/prompts.py``),
so a tuned model sees at training time exactly what it sees at run time.

- ``diagnostician``: the case (fenced), its options and numbered evidence (when the source has some) -> reasoning
  (the dataset's explanation, a teacher's rationale, or none) ending in :data:`prompts.FINAL_ANSWER`;
- ``critic``: the case and a proposed answer (the gold one or a seeded distractor) -> a review
  (:data:`prompts.CRITIC_APPROVE` / :data:`prompts.CRITIC_REVISE`, naming the better option), then the verdict
  prompt -> ``A`` (approve) or ``R`` (revise), as the critic's two calls at run time;
- ``translator``: a Korean/English pair, with the placeholders of ``agents/preserve.py`` on both sides;
- ``single``: the single-model question -> the answer line (:mod:`medcouncil.scenarios.training.examples`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, Field, model_validator

from medcouncil.agents import prompts
from medcouncil.agents.preserve import PLACEHOLDER, protect
from medcouncil.agents.roles import evidence_block, options_block
from medcouncil.scenarios.datasets.samples import Sample, record_id
from medcouncil.scenarios.training.examples import record_to_example
from medcouncil.serving.common.errors import ConfigError
from medcouncil.serving.common.jsonl import BadLine, read_json
from medcouncil.serving.training.data import ChatExample, Message
from medcouncil.tools.knowledge import Evidence
from medcouncil.tools.language import detect_language, is_hangul
from medcouncil.tools.untrusted import fence, neutralise

ROLES = ("diagnostician", "critic", "translator", "single")


class Pair(BaseModel):
    """A Korean text and its English translation (a line of a ``--parallel`` JSONL file: ``{"ko": .., "en": ..}``)."""

    ko: str = Field(min_length=1, pattern=r"\S")
    en: str = Field(min_length=1, pattern=r"\S")

    @model_validator(mode="after")
    def _not_swapped(self) -> Pair:
        if detect_language(self.en) == "ko" and not any(is_hangul(char) for char in self.ko):
            raise ValueError("'ko' holds no Korean and 'en' is Korean: the two look swapped")
        return self


def _because(sample: Sample) -> str:
    explanation = (sample.metadata.get("explanation") or "").strip()
    return f" {explanation}" if explanation else ""


def _evidence(sample: Sample) -> list[Evidence]:
    snippets = [s for s in sample.metadata.get("evidence", "").split("\n\n") if s.strip()]
    source = sample.metadata.get("source", sample.metadata.get("dataset", "data"))
    return [
        Evidence(id=f"{sample.id}-{n}", text=text, score=1.0, source=source, item_id=sample.id)
        for n, text in enumerate(snippets, 1)
    ]


def _answer(sample: Sample, letter: str) -> str:
    return f"{letter}. {sample.options[letter]}"


def _case(sample: Sample) -> str:
    """The case as the diagnostician sees it: a source whose contexts are given as evidence (PubMedQA's raw and HF
    formats) gives its bare question here, so the contexts are not quoted twice."""
    bare = sample.metadata.get("bare_question", "")
    return bare if bare and sample.metadata.get("evidence") else sample.question


def diagnostician_task(sample: Sample) -> str:
    """The diagnostician's task for an item: what the role sees at run time, what a teacher is asked
    (``medcouncil distill``) and what a tuned model is trained on."""
    return prompts.DIAGNOSTICIAN_TASK.format(
        case=fence(_case(sample)),
        options=options_block(sample.options),
        evidence=evidence_block(_evidence(sample)),
        feedback="",
    )


def diagnostician(sample: Sample, rationale: str | None = None) -> ChatExample:
    """The diagnostician's turn; the reasoning is ``rationale`` (a teacher's), else the dataset's explanation."""
    task = diagnostician_task(sample)
    reasoning = (rationale or sample.metadata.get("explanation") or "").strip()
    final = prompts.FINAL_ANSWER.format(answer=_answer(sample, sample.answer))
    return ChatExample(
        messages=(
            Message(role="system", content=prompts.DIAGNOSTICIAN_SYSTEM),
            Message(role="user", content=task),
            Message(role="assistant", content=f"{reasoning}\n\n{final}".strip()),
        ),
        source=f"{sample.id}:diagnostician",
    )


def critic(sample: Sample, rng: random.Random) -> list[ChatExample]:
    """The critic's review and verdict of the gold answer or (half the time, seeded) a distractor."""
    distractors = [letter for letter in sample.options if letter != sample.answer]
    proposed = sample.answer if rng.random() < 0.5 else rng.choice(distractors)
    answer = prompts.FINAL_ANSWER.format(answer=_answer(sample, proposed))
    evidence = evidence_block(_evidence(sample))
    task = prompts.CRITIC_TASK.format(
        case=fence(_case(sample)), options=options_block(sample.options), evidence=evidence, answer=neutralise(answer)
    )
    if proposed == sample.answer:
        review = prompts.CRITIC_APPROVE.format(answer=_answer(sample, proposed), because=_because(sample))
    else:
        review = prompts.CRITIC_REVISE.format(
            answer=_answer(sample, proposed), better=_answer(sample, sample.answer), because=_because(sample)
        )
    verdict = "A" if proposed == sample.answer else "R"
    return [
        ChatExample(
            messages=(
                Message(role="system", content=prompts.CRITIC_SYSTEM),
                Message(role="user", content=task),
                Message(role="assistant", content=review),
            ),
            source=f"{sample.id}:critic-review",
        ),
        ChatExample(
            messages=(
                Message(role="user", content=prompts.CRITIC_VERDICT.format(review=review)),
                Message(role="assistant", content=verdict),
            ),
            source=f"{sample.id}:critic-verdict",
        ),
    ]


def translator(pair: Pair, index: int) -> list[ChatExample]:
    """Both directions of a pair, the Korean side's protected spans as placeholders on both sides (an English side
    that lacks a span keeps the Korean side's placeholder out of it: the example is still consistent)."""
    masked_ko, spans = protect(pair.ko)
    masked_en = pair.en
    for number, span in enumerate(spans, 1):
        masked_en = masked_en.replace(span, PLACEHOLDER.format(number), 1)
    return [
        ChatExample(
            messages=(
                Message(role="system", content=prompts.TRANSLATE_TO_ENGLISH),
                Message(role="user", content=masked_ko),
                Message(role="assistant", content=masked_en),
            ),
            source=f"pair{index}:ko-en",
        ),
        ChatExample(
            messages=(
                Message(role="system", content=prompts.TRANSLATE_TO_KOREAN),
                Message(role="user", content=masked_en),
                Message(role="assistant", content=masked_ko),
            ),
            source=f"pair{index}:en-ko",
        ),
    ]


class FreeText(BaseModel):
    """A question with a free-text answer and its evidence (BioASQ golden files: ``body``, ``ideal_answer``,
    ``snippets``)."""

    id: str
    question: str
    answer: str
    evidence: list[str] = []
    source: str = ""


def _named(question: dict[str, object]) -> str:
    """`` (ID)`` of a BioASQ question that has an id of its own, else nothing (its number says it all)."""
    own = record_id(question, -1, "id")
    return "" if own == "-1" else f" ({own})"


def read_bioasq(path: Path) -> tuple[list[FreeText], list[str]]:
    """The questions of a BioASQ golden JSON file that have an ideal answer, and the questions skipped
    (``FILE: question N (ID): reason``: not an object, no body, no ideal answer, as in a test-phase file).

    Raises:
        ConfigError: unreadable, not JSON, or no ``questions`` list (naming the file).
    """
    try:
        data = read_json(path)
    except (BadLine, OSError) as error:
        raise ConfigError(str(error) if isinstance(error, BadLine) else f"{path}: cannot read ({error})") from None
    questions = data.get("questions") if isinstance(data, dict) else None
    if not isinstance(questions, list):
        raise ConfigError(f"{path}: not a BioASQ golden file (no 'questions' list)")
    items: list[FreeText] = []
    skipped: list[str] = []
    for number, question in enumerate(questions, 1):
        if not isinstance(question, dict):
            skipped.append(f"{path}: question {number}: not an object")
            continue
        body = question.get("body")
        ideal = question.get("ideal_answer")
        answer = ideal[0] if isinstance(ideal, list) and ideal else ideal
        if not isinstance(body, str) or not body.strip():
            skipped.append(f"{path}: question {number}{_named(question)}: no body")
            continue
        if not isinstance(answer, str) or not answer.strip():
            skipped.append(f"{path}: question {number}{_named(question)}: no ideal answer")
            continue
        snippets = [str(s.get("text", "")) for s in question.get("snippets") or [] if isinstance(s, dict)]
        items.append(
            FreeText(
                id=record_id(question, number, "id"),
                question=body.strip(),
                answer=answer.strip(),
                evidence=[s for s in snippets if s.strip()][:3],
                source=path.name,
            )
        )
    return items, skipped


def diagnostician_free(item: FreeText) -> ChatExample:
    """The diagnostician's turn on a free-text question: the evidence numbered, the ideal answer as the final one."""
    evidence = [
        Evidence(id=f"{item.id}-{n}", text=text, score=1.0, source=item.source, item_id=item.id)
        for n, text in enumerate(item.evidence, 1)
    ]
    task = prompts.DIAGNOSTICIAN_TASK.format(
        case=fence(item.question), options="", evidence=evidence_block(evidence), feedback=""
    )
    reply = f"{item.answer}\n\n{prompts.FINAL_ANSWER.format(answer=item.answer.split('. ')[0].strip())}"
    return ChatExample(
        messages=(
            Message(role="system", content=prompts.DIAGNOSTICIAN_SYSTEM),
            Message(role="user", content=task),
            Message(role="assistant", content=reply),
        ),
        source=f"{item.id}:diagnostician",
    )


def rationale_key(item_id: str, question: str = "") -> str:
    """How a teacher's rationale finds its item: by id and question text (two ``--dataset`` files may share ids,
    such as positions), by id alone for a distill output written before it recorded the question."""
    text = " ".join(question.split())
    return f"{item_id}\n{text}" if text else item_id


def taught_key(sample: Sample, rationales: dict[str, str]) -> str | None:
    """The key of ``sample``'s rationale among :func:`rationale_key`-keyed ones, if it has one."""
    key = rationale_key(sample.id, sample.question)
    return key if key in rationales else sample.id if sample.id in rationales else None


def taught_for(sample: Sample, rationales: dict[str, str]) -> str | None:
    """``sample``'s rationale among :func:`rationale_key`-keyed ones."""
    key = taught_key(sample, rationales)
    return None if key is None else rationales[key]


def role_pools(
    samples: Sequence[Sample],
    pairs: Sequence[Pair],
    seed: int,
    free: Sequence[FreeText] = (),
    rationales: dict[str, str] | None = None,
) -> dict[str, list[ChatExample]]:
    """Every role's examples for the items (and pairs, and free-text questions), before mixing."""
    rng = random.Random(seed)
    rationales = rationales or {}
    return {
        "diagnostician": [diagnostician(s, taught_for(s, rationales)) for s in samples]
        + [diagnostician_free(item) for item in free],
        "critic": [example for s in samples for example in critic(s, rng)],
        "translator": [example for n, pair in enumerate(pairs, 1) for example in translator(pair, n)],
        "single": [record_to_example(s).model_copy(update={"source": f"{s.id}:single"}) for s in samples],
    }


def role_of(example: ChatExample) -> str:
    """The role an example of :func:`role_pools` trains (from its ``source``: ``ID:diagnostician``,
    ``ID:critic-review``, ``pairN:ko-en``, ``ID:single``)."""
    kind = example.source.rsplit(":", 1)[-1]
    return "critic" if kind.startswith("critic") else "translator" if kind in ("ko-en", "en-ko") else kind


def parse_mix(text: str) -> dict[str, float]:
    """``diagnostician=0.6,critic=0.3,single=0.1`` -> weights (normalised to sum 1).

    Raises:
        ValueError: an unknown role, a weight that is not a non-negative number, or all zero.
    """
    weights: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        role, sep, value = part.partition("=")
        if not sep or role.strip() not in ROLES:
            raise ValueError(f"{part!r}: expected ROLE=WEIGHT with ROLE one of {', '.join(ROLES)}")
        try:
            weights[role.strip()] = float(value)
        except ValueError:
            raise ValueError(f"{part!r}: the weight is not a number") from None
        if not math.isfinite(weights[role.strip()]):
            raise ValueError(f"{part!r}: the weight is not a finite number")
        if weights[role.strip()] < 0:
            raise ValueError(f"{part!r}: a weight cannot be negative")
    total = sum(weights.values())
    if total <= 0:
        raise ValueError("the weights sum to 0")
    return {role: weight / total for role, weight in weights.items()}


def target_mix(pools: dict[str, list[ChatExample]], weights: dict[str, float]) -> dict[str, float]:
    """The weights :func:`mix` draws by: a role with no examples gets 0 and the others' weights are renormalised
    (as given when no role is lost)."""
    present = sum(weight for role, weight in weights.items() if pools.get(role))
    lost = any(weight > 0 and not pools.get(role) for role, weight in weights.items())
    share = present if lost and present > 0 else 1.0  # the present roles' share; 1 when nothing is lost
    return {role: weight / share if pools.get(role) else 0.0 for role, weight in weights.items()}


def mix(
    pools: dict[str, list[ChatExample]], weights: dict[str, float], size: int, seed: int
) -> tuple[list[ChatExample], dict[str, int]]:
    """``size`` examples drawn from the pools by weight (seeded, without replacement: a role whose pool is smaller
    than its share gives all it has), shuffled; and the count per role. A role with no examples at all (no source
    for it was given) is left out and the others' weights renormalised, so its share is not lost. Shares are rounded
    by largest remainder, so they add up to ``size`` exactly (rounding each alone could give one more or fewer)."""
    rng = random.Random(seed)
    chosen: list[ChatExample] = []
    targets = {role: weight * size for role, weight in target_mix(pools, weights).items()}
    counts = {role: math.floor(target) for role, target in targets.items()}
    left = max(0, min(size, round(sum(targets.values()))) - sum(counts.values()))
    by_remainder = sorted(targets, key=lambda role: counts[role] - targets[role])  # stable: the mix's order on ties
    for role in by_remainder[:left]:
        counts[role] += 1
    for role in weights:
        pool = pools.get(role, [])
        counts[role] = min(len(pool), counts[role])
        chosen += rng.sample(pool, counts[role])
    rng.shuffle(chosen)
    return chosen, counts
