"""Role-shaped training data: each role's builder uses the council's own prompts; the mix; the CLI end to end with
decontamination (exact and near-duplicate, with the real embedder) and its data card."""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import pytest

from medcouncil.agents import prompts
from medcouncil.scenarios.datasets.samples import Sample
from medcouncil.scenarios.training.sft import (
    FreeText,
    Pair,
    critic,
    diagnostician,
    diagnostician_free,
    mix,
    parse_mix,
    role_pools,
    target_mix,
    translator,
)
from medcouncil.tools.mcqa import format_mcqa

OPTIONS = {"A": "Asthma", "B": "COPD", "C": "Pneumonia"}
SAMPLE = Sample(
    id="s1",
    question="Episodic wheeze relieved by salbutamol. Diagnosis?",
    options=OPTIONS,
    answer="A",
    metadata={"explanation": "Reversible obstruction."},
)


def test_diagnostician_turn_is_the_run_time_prompt_with_the_explanation_and_final_line() -> None:
    example = diagnostician(SAMPLE)
    system, user, reply = example.messages
    assert system.content == prompts.DIAGNOSTICIAN_SYSTEM
    assert user.content.startswith("Case:\n⟪Episodic wheeze") and "C. ⟪Pneumonia⟫" in user.content
    assert user.content.endswith("Differential diagnosis and final answer:")
    assert reply.content == "Reversible obstruction.\n\n" + prompts.FINAL_ANSWER.format(answer="A. Asthma")
    assert diagnostician(SAMPLE, rationale="Teacher says so.").messages[2].content.startswith("Teacher says so.")


def test_critic_reviews_gold_or_distractor_and_gives_the_verdict_letter() -> None:
    rng = random.Random(3)
    seen = set()
    for _ in range(20):
        review, verdict = critic(SAMPLE, rng)
        proposed = review.messages[1].content.split("Final answer: ")[1][0]
        assert verdict.messages[1].content == ("A" if proposed == "A" else "R")
        if proposed != "A":
            assert "A. Asthma is." in review.messages[2].content  # names the better option
        assert verdict.messages[0].content == prompts.CRITIC_VERDICT.format(review=review.messages[2].content)
        seen.add(verdict.messages[1].content)
    assert seen == {"A", "R"}


def test_translator_pairs_carry_the_same_placeholders_both_ways() -> None:
    to_en, to_ko = translator(Pair(ko="salbutamol 100 mcg 흡입 후 호전", en="improved after salbutamol 100 mcg"), 1)
    assert to_en.messages[1].content == "⟦1⟧ ⟦2⟧ 흡입 후 호전"
    assert to_en.messages[2].content == "improved after ⟦1⟧ ⟦2⟧"
    assert (
        to_ko.messages[0].content == prompts.TRANSLATE_TO_KOREAN and to_ko.messages[2].content == "⟦1⟧ ⟦2⟧ 흡입 후 호전"
    )


def test_single_is_the_single_model_prompt_and_free_text_is_supported() -> None:
    gout = FreeText(id="b1", question="What causes gout?", answer="Urate crystals. They deposit.", evidence=["x"])
    pools = role_pools([SAMPLE], [], seed=0, free=[gout])
    assert pools["single"][0].messages[0].content == format_mcqa(SAMPLE.question, OPTIONS)
    free = diagnostician_free(FreeText(id="b1", question="What causes gout?", answer="Urate crystals. They deposit."))
    assert free.messages[2].content.endswith("Final answer: Urate crystals")
    assert len(pools["diagnostician"]) == 2


def test_mix_by_weight_is_seeded() -> None:
    samples = [SAMPLE.model_copy(update={"id": f"s{n}"}) for n in range(40)]
    pools = role_pools(samples, [], seed=1)
    weights = parse_mix("diagnostician=3,critic=1")
    first, counts = mix(pools, weights, 40, seed=5)
    again, _ = mix(pools, weights, 40, seed=5)
    assert counts == {"diagnostician": 30, "critic": 10}
    assert [e.source for e in first] == [e.source for e in again]
    _, counts = mix(pools, parse_mix("diagnostician=1,translator=1"), 40, seed=5)
    assert counts == {"diagnostician": 40, "translator": 0}  # no pairs given: their share is not lost
    both = parse_mix("diagnostician=1,translator=1")
    assert target_mix(pools, both) == {"diagnostician": 1.0, "translator": 0.0}  # the card's mix_target
    default = parse_mix("diagnostician=0.6,critic=0.3,single=0.1")  # sums to 1.0000000000000002
    assert mix(pools, default, 5, seed=5)[1] == {"diagnostician": 3, "critic": 2, "single": 0}  # largest remainder
    for size in range(1, 41):  # rounded alone, 0.6/0.3/0.1 of 5 gave 3 + 2 + 1 = 6 examples
        for weights in (default, parse_mix("diagnostician=1,critic=1,single=1"), parse_mix("critic=0.55,single=0.45")):
            assert sum(mix(pools, weights, size, seed=1)[1].values()) == size
    assert mix(role_pools([], [], seed=1), parse_mix("diagnostician=0,critic=1"), 4, seed=5)[0] == []  # no division
    for bad in ("doctor=1", "critic=x", "critic=-1", "critic=0", "critic=nan", "critic=inf"):
        with pytest.raises(ValueError):
            parse_mix(bad)


def test_build_drops_evaluation_items_and_writes_a_data_card(tmp_path: Path, cli: list[str]) -> None:
    rows = [
        {"id": "copy", "question": "which organ PUMPS blood?", "options": ["Heart", "Liver"], "answer": "A"},
        {
            "id": "near",
            "question": "A chronic alcoholic patient came to emergency with severe pain in epigastrium "
            "and multiple episodes of vomiting. On examination, guarding was present in upper epigastrium. Chest X-ray "
            "was normal. What is the next step?",
            "options": ["CT abdomen", "Endoscopy"],
            "answer": "A",
        },
        {
            "id": "clean",
            "question": "Which nerve supplies the deltoid?",
            "options": ["Axillary", "Radial"],
            "answer": "A",
        },
    ]
    train = tmp_path / "train.jsonl"
    # A malformed row (an option left empty before the last) is skipped, said on stderr and counted on the card.
    broken = {"id": "gap", "question": "Which bone?", "options": ["Femur", "", "Ulna"], "answer": "C"}
    train.write_text("".join(json.dumps(r) + "\n" for r in [*rows, broken]))
    evals = tmp_path / "eval.jsonl"
    evals.write_text(
        json.dumps({"question": "Which organ pumps blood?", "options": ["Heart", "Lung"], "answer": "A"})
        + "\n"
        + json.dumps(
            {
                "question": "Chronic alcoholic comes with pain "
                "epigastrium and recurrent vomiting. On examination guarding in upper epigastrium. Chest X-ray "
                "normal. What to do next?",
                "options": ["a", "b"],
                "answer": "A",
            }
        )
        + "\n"
    )
    out = tmp_path / "sft" / "data.jsonl"
    (tmp_path / "none").mkdir()  # a data directory with no registered dataset: only --against is checked
    result = subprocess.run(
        [
            *cli,
            "data",
            "build",
            "--dataset",
            str(train),
            "--against",
            str(evals),
            "--data-dir",
            str(tmp_path / "none"),
            "--mix",
            "diagnostician=1,single=1",
            "--size",
            "2",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    card = json.loads(out.with_suffix(".card.json").read_text())
    dropped = {(d["train_id"], d["kind"]) for d in card["decontamination"]["dropped"]}
    assert dropped == {("copy", "exact"), ("near", "near")}
    assert card["per_role"] == {"diagnostician": 1, "single": 1} and card["sources"] == {str(train): 3}
    assert card["malformed_rows_skipped"] == {str(train): 1}
    assert f"skipped malformed row: {train}:4: options: option B is empty" in " ".join(result.stderr.split())
    sources = sorted(json.loads(line)["source"] for line in out.read_text().splitlines())
    assert sources == ["clean:diagnostician", "clean:single"]
    tokens = card["tokens"]  # counted with the embedded model's tokenizer and chat template, as finetune renders
    assert tokens["tokenizer"] == "gemma-3-270m" and 20 < tokens["min"] <= tokens["max"] < 512
    assert set(tokens["median_per_role"]) == {"diagnostician", "single"}
    assert tokens["median_per_role"]["diagnostician"] > tokens["median_per_role"]["single"]
    bad = subprocess.run(
        [*cli, "data", "build", "--dataset", str(train), "--mix", "doctor=1", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 1 and bad.stderr.startswith("error: --mix: 'doctor=1'")


def test_pubmedqa_contexts_become_numbered_evidence_and_the_conclusion_the_reasoning() -> None:
    from medcouncil.scenarios.datasets import pubmedqa

    record = {
        "pubid": 7,
        "question": "Does X help?",
        "context": {"contexts": ["First context.", "Second one."]},
        "final_decision": "no",
        "long_answer": "X did not help.",
    }
    _system, user, reply = diagnostician(pubmedqa.record_to_sample(record, 0)).messages
    assert user.content.startswith("Case:\n⟪Does X help?⟫")  # the bare question: the contexts are not quoted twice
    assert "[1] (pubmedqa#7) ⟪First context.⟫\n[2] (pubmedqa#7) ⟪Second one.⟫" in user.content
    assert reply.content == "X did not help.\n\n" + prompts.FINAL_ANSWER.format(answer="B. no")


def test_a_blank_side_of_a_parallel_pair_is_refused() -> None:
    from pydantic import ValidationError

    assert Pair(ko="흉통이 있다", en="Chest pain.").en == "Chest pain."
    for ko, en in (("", ""), ("흉통이 있다", "   ")):
        with pytest.raises(ValidationError):
            Pair(ko=ko, en=en)


def test_parallel_pairs_are_used_by_the_default_mix_and_checked(cli: list[str], tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"ko": "흉통이 있다", "en": "Chest pain."}, ensure_ascii=False) + "\n")
    out = tmp_path / "ko.jsonl"
    base = ["--base", str(tmp_path / "none.gguf")]  # no tokenizer: the token count is a note, the build is quick
    made = subprocess.run(
        [*cli, "data", "build", "--parallel", str(pairs), *base, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )  # the default mix takes the pairs given (it had no translator weight, and wrote nothing)
    assert made.returncode == 0, made.stderr
    assert json.loads(out.with_suffix(".card.json").read_text())["per_role"]["translator"] == 1
    unused = subprocess.run(
        [*cli, "data", "build", "--parallel", str(pairs), "--mix", "diagnostician=1", *base, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert unused.returncode == 1 and "--mix gives the translator no weight, so no pair would be used" in unused.stderr
    pairs.write_text(
        pairs.read_text() + json.dumps({"ko": "Chest pain.", "en": "흉통이 있다"}, ensure_ascii=False) + "\n"
    )
    swapped = subprocess.run(
        [*cli, "data", "build", "--parallel", str(pairs), *base, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert swapped.returncode == 1
    assert swapped.stderr == f"error: {pairs}:2: 'ko' holds no Korean and 'en' is Korean: the two look swapped\n"


def test_bioasq_questions_without_a_body_or_an_ideal_answer_are_named(tmp_path: Path) -> None:
    from medcouncil.scenarios.training.sft import read_bioasq

    path = tmp_path / "golden.json"
    questions = [
        {"id": "q1", "body": "What is BRCA1?", "ideal_answer": ["A tumour suppressor."], "snippets": [{"text": "s"}]},
        {"body": "Is it?", "exact_answer": "yes"},  # a test-phase question: no ideal answer, no id
        {"id": None, "body": " ", "ideal_answer": "x"},
        "text",
    ]
    path.write_text(json.dumps({"questions": questions}))
    items, skipped = read_bioasq(path)
    assert [(i.id, i.question, i.answer, i.evidence) for i in items] == [
        ("q1", "What is BRCA1?", "A tumour suppressor.", ["s"])
    ]
    assert skipped == [
        f"{path}: question 2: no ideal answer",
        f"{path}: question 3: no body",
        f"{path}: question 4: not an object",
    ]


def test_preference_pairs_given_to_sft_are_sent_to_dpo(tmp_path: Path) -> None:
    from medcouncil.scenarios.training.examples import load_examples
    from medcouncil.serving.common.errors import ConfigError
    from medcouncil.serving.training.config import FinetuneConfig

    pairs = tmp_path / "pairs.jsonl"
    turns = [{"role": "user", "content": "Scurvy?"}]  # TRL's conversational shape: a prompt of turns
    pairs.write_text(json.dumps({"prompt": turns, "chosen": turns, "rejected": turns}) + "\n")
    with pytest.raises(ConfigError, match=r"pairs\.jsonl: preference pairs \(chosen, rejected\), .*--method dpo"):
        load_examples(FinetuneConfig(data=str(pairs), out=tmp_path / "out"))
