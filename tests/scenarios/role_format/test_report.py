"""The role-format report over run folders: critic verdicts against correctness, episode actions, the command."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Literal

import pytest

from medcouncil.agents.interview import Interview, Step
from medcouncil.agents.protocol import Episode, Question, Turn
from medcouncil.scenarios.bench.journal import Journal, Manifest, Record, RunConfig
from medcouncil.scenarios.datasets.registry import DatasetInfo
from medcouncil.scenarios.role_format.measure import measure_actions, measure_roles, measure_verdicts
from medcouncil.scenarios.role_format.report import run_roles
from medcouncil.serving.common.errors import ConfigError
from medcouncil.serving.components import Choice

OPTIONS = {"A": "Inferior myocardial infarction", "B": "Pneumonia"}
Verdict = Literal["APPROVE", "REVISE"]


def council(verdicts: list[Verdict], answer: str = "Inferior STEMI.\nFinal answer: A") -> Episode:
    turns = [Turn(agent="diagnostician", content=answer)]
    turns += [Turn(agent="critic", kind="verdict", verdict=v, content=f"{v}: Sound: A fits.") for v in verdicts]
    question = Question(text="Chest pain, ST elevation.", options=OPTIONS)
    return Episode(question=question, answerer="council", turns=turns)


def test_verdicts_are_counted_and_set_against_correctness() -> None:
    verdicts = measure_verdicts(
        [
            (council(["APPROVE"]), True),
            (council(["REVISE", "APPROVE"]), False),
            (council(["REVISE", "REVISE"]), False),
            (council([]), True),  # no critic (single mode): not counted
        ]
    )
    assert verdicts.turns == 5 and verdicts.approve == pytest.approx(2 / 5) and verdicts.items == 3
    assert verdicts.agreement == pytest.approx(2 / 3)
    assert verdicts.approve_precision == pytest.approx(1 / 2) and verdicts.approve_recall == 1.0
    assert measure_verdicts([(council(["REVISE"]), False)]).approve_precision is None


def test_the_calibrating_median_is_of_each_items_first_verdict_choice() -> None:
    def chosen(*p_approve: float) -> Episode:
        episode = council(["REVISE"] * len(p_approve))
        critics = [turn for turn in episode.turns if turn.agent == "critic"]
        for turn, p in zip(critics, p_approve, strict=True):
            turn.choice = Choice(letter="A" if p >= 0.5 else "R", probabilities={"A": p, "R": 1 - p})
        return episode

    items = [(chosen(0.9, 0.1), False), (chosen(0.7), False), (chosen(0.2), True), (council(["APPROVE"]), True)]
    assert measure_verdicts(items).approve_median == pytest.approx(0.7)  # 0.9, 0.7, 0.2: the first of each
    assert measure_verdicts([(council(["APPROVE"]), True)]).approve_median is None  # no choice recorded


def test_episode_actions_valid_and_gathering_first() -> None:
    asks = Interview(
        case_id="a",
        steps=[
            Step(by="doctor", kind="invalid", text="Case: a woman"),
            Step(by="doctor", kind="ask", text="Any fever?"),
            Step(by="patient", kind="reply", text="No."),
            Step(by="doctor", kind="diagnosis", text="Myasthenia gravis"),
        ],
    )
    guesses = Interview(case_id="b", steps=[Step(by="doctor", kind="diagnosis", text="Stroke")])
    actions = measure_actions([asks, guesses])
    assert actions.episodes == 2 and actions.steps == 4 and actions.valid == 0.75
    assert actions.gathers_first == 0.5 and actions.mean_actions == 0.5


def test_an_episode_steps_format_is_an_action_line() -> None:
    step = Question(text="You are the doctor... Reply with exactly one line", reply="action")

    def said(text: str) -> Episode:
        return Episode(question=step, answerer="council", turns=[Turn(agent="diagnostician", content=text)])

    acted, echoed = said("ASK: Any fever?"), said("ASK: <a question for the patient>")
    older = Episode(
        question=Question(text="You are the doctor..."),
        answerer="council",
        turns=[Turn(agent="diagnostician", content="ASK: Any fever?")],
    )  # a run from before Question.reply
    assert measure_roles([older], steps=True)[0].format == 1.0 and measure_roles([older])[0].format == 0.0
    (diagnostician, _) = measure_roles([acted, echoed])
    assert diagnostician.turns == 2 and diagnostician.format == 0.5
    shaped = council(["APPROVE"], answer="1. Inferior STEMI\n2. Pericarditis\n3. Aortic dissection")
    assert measure_roles([shaped])[0].format == 1.0  # the enforced differential, the constrained choice after it
    long = council(["APPROVE"], answer="Chest pain " * 120 + "\nFinal answer: A")
    assert measure_roles([long])[0].over_length == 1.0


def test_the_roles_command_reads_a_benchmark_run(cli: list[str], tmp_path: Path) -> None:
    journal = Journal(tmp_path / "run")
    runs: list[tuple[Verdict, bool]] = [("APPROVE", True), ("REVISE", False), ("APPROVE", False)]
    for number, (verdict, correct) in enumerate(runs):
        record = Record(
            sample_id=str(number),
            mode="council",
            gold="A",
            letter="A" if correct else "B",
            correct=correct,
            episode=council([verdict]),
        )
        journal.append(record)
    journal.close()
    (row,) = run_roles(tmp_path / "run")
    assert row.mode == "council" and row.items == 3 and row.verdicts.agreement == pytest.approx(2 / 3)
    out = tmp_path / "roles.json"
    done = subprocess.run(
        [*cli, "roles", str(tmp_path / "run"), "--json", str(out)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "Role formats" in done.stdout and "Critic verdicts" in done.stdout and "67%" in done.stdout
    assert json.loads(out.read_text())[0]["verdicts"]["items"] == 3
    missing = subprocess.run([*cli, "roles", str(tmp_path / "nowhere")], capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1 and "no such run folder" in missing.stderr
    with pytest.raises(ConfigError, match="not a run folder"):
        run_roles(tmp_path)
    with pytest.raises(ConfigError, match=r"no run\.json"):  # --limit needs the run's item order
        run_roles(tmp_path / "run", limit=2)


def test_limit_reports_the_runs_first_items_in_its_own_order(tmp_path: Path, cli: list[str]) -> None:
    """A 300-item run reports its first 100 alone: the manifest's order, not the order the answers were journaled."""
    journal = Journal(tmp_path / "run")
    info = DatasetInfo(dataset="x", source="x.jsonl", fingerprint="f", rows=3, skipped=0)
    journal.write_manifest(Manifest(dataset=info, config=RunConfig(modes=["council"]), sample_ids=["b", "a", "c"]))
    items: list[tuple[str, Verdict, bool]] = [("a", "APPROVE", False), ("c", "REVISE", False), ("b", "APPROVE", True)]
    for sample_id, verdict, correct in items:
        letter = "A" if correct else "B"
        episode = council([verdict])
        journal.append(
            Record(sample_id=sample_id, mode="council", gold="A", letter=letter, correct=correct, episode=episode)
        )
    journal.close()
    assert run_roles(tmp_path / "run")[0].items == 3
    (first,) = run_roles(tmp_path / "run", limit=1)
    assert first.items == 1 and first.verdicts.agreement == 1.0  # "b": approved and correct
    (two,) = run_roles(tmp_path / "run", limit=2)
    assert two.items == 2 and two.verdicts.agreement == pytest.approx(1 / 2)
    assert run_roles(tmp_path / "run", limit=10)[0].items == 3
    with pytest.raises(ConfigError, match="at least 1"):
        run_roles(tmp_path / "run", limit=0)
    done = subprocess.run(
        [*cli, "roles", str(tmp_path / "run"), "--limit", "1"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "100%" in done.stdout and "│     1 │" in done.stdout


def test_limit_on_an_episode_run_keeps_its_first_cases(tmp_path: Path) -> None:
    from medcouncil.agents.judge import Verdict
    from medcouncil.scenarios.episodes.harness import EpisodeConfig, EpisodeManifest, EpisodeRecord

    journal = Journal(tmp_path / "episodes")
    manifest = EpisodeManifest(source="x", fingerprint="f", config=EpisodeConfig(modes=["single"]), case_ids=["2", "1"])
    journal.write_manifest(manifest)
    for case_id, opening in [
        ("1", Step(by="doctor", kind="diagnosis", text="Stroke")),
        ("2", Step(by="doctor", kind="ask", text="Fever?")),
    ]:
        steps = [opening, Step(by="doctor", kind="diagnosis", text="Stroke")]
        interview = Interview(case_id=case_id, steps=steps, doctor_episodes=[council([])])
        verdict = Verdict(correct=False, method="none", reason="")
        journal.append(
            EpisodeRecord(
                case_id=case_id, mode="single", gold="MI", correct=False, verdict=verdict, interview=interview
            )
        )
    journal.close()
    (every,) = run_roles(tmp_path / "episodes")
    assert every.items == 2 and every.actions is not None and every.actions.gathers_first == 0.5
    (first,) = run_roles(tmp_path / "episodes", limit=1)
    assert first.items == 1 and first.actions is not None and first.actions.gathers_first == 1.0  # case "2" asks
