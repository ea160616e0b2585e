"""The episode harness and its report with scripted doctors: every case × mode once, resumable, static vs
interactive, failures journaled and retried, refusals scored as failed cases."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from medcouncil.agents.cases import ClinicalCase, Finding
from medcouncil.agents.lookup import Reveal, measurement_result, patient_answer
from medcouncil.agents.protocol import Answerer, Episode, Event, Question
from medcouncil.scenarios.bench.journal import Journal, read_errors
from medcouncil.scenarios.episodes.harness import (
    EpisodeConfig,
    EpisodeHarness,
    EpisodeManifest,
    Judging,
    Players,
    expected,
    fingerprint,
    read_episode_records,
)
from medcouncil.scenarios.episodes.report import write_report
from medcouncil.serving.common.errors import EndpointUnreachableError, RequestRejectedError
from tests.agents.test_interview import CASE

MCQA_CASE = ClinicalCase(
    id="q1",
    objective="Which of the following is the most likely diagnosis?",
    opening="A 24-year-old woman wheezes.",
    patient=(Finding(name="History", result="She wheezes after exercise."),),
    tests=(Finding(name="Spirometry", result="FEV1 rises 15% after salbutamol."),),
    diagnosis="Asthma",
    options={"A": "Asthma", "B": "COPD"},
    answer="A",
    vignette="A 24-year-old woman wheezes. She wheezes after exercise. Spirometry: FEV1 rises 15% after salbutamol. "
    "Which of the following is the most likely diagnosis?",
)


class RuleDoctor:
    """Asks about smoking, orders the antibody test, then commits; on a case with options picks ``letter``.
    ``fail`` times it raises first (the model was unreachable); ``refuse`` raises an engine refusal."""

    def __init__(self, name: str, letter: str = "A", fail: int = 0, refuse: bool = False) -> None:
        self.name, self.letter, self.fail, self.refuse = name, letter, fail, refuse
        self.seen: list[Question] = []

    async def stream(self, question: Question, history: Sequence[Episode] = ()) -> AsyncIterator[Event]:
        self.seen.append(question)
        if self.refuse:
            raise RequestRejectedError("http://127.0.0.1:1/v1: HTTP 400: prompt longer than the context")
        if self.fail:
            self.fail -= 1
            raise EndpointUnreachableError("http://127.0.0.1:1/v1 does not answer")
        text = question.text
        if question.options:
            answer = "DIAGNOSIS: " + question.options[self.letter]
        elif "Patient:" not in text:
            answer = "ASK: Do you smoke?"
        elif "Measurement:" not in text:
            answer = "TEST: acetylcholine receptor antibodies"
        else:
            answer = "DIAGNOSIS: Myasthenia gravis"
        letter = self.letter if question.options else None
        yield Episode(question=question, answerer=self.name, answer=answer, letter=letter)


async def patient(case: ClinicalCase, text: str) -> Reveal:
    return patient_answer(case, text)


async def measure(case: ClinicalCase, text: str) -> Reveal:
    return measurement_result(case, text)


def make_players(doctors: dict[str, Answerer]) -> Players:
    return Players(
        doctors={m: (d, d) for m, d in doctors.items()}, static=doctors, helpers=lambda: (patient, measure, None, [])
    )


def manifest_for(cases: list[ClinicalCase], modes: list[str]) -> EpisodeManifest:
    config = EpisodeConfig(modes=modes, budget=4)
    return EpisodeManifest(
        source="test",
        fingerprint=fingerprint(cases),
        config=config,
        case_ids=[c.id for c in cases],
        option_cases=[c.id for c in cases if c.options],
        modes=config.all_modes(cases),
    )


def run(
    directory: Path,
    manifest: EpisodeManifest,
    cases: list[ClinicalCase],
    doctors: dict[str, Answerer],
    retries: int = 0,
) -> EpisodeHarness:
    journal = Journal(directory)
    journal.write_manifest(manifest)
    harness = EpisodeHarness(
        journal, manifest.modes, lambda: make_players(doctors), Judging(), budget=4, retries=retries, backoff_s=0
    )
    asyncio.run(harness.run(harness.pending(cases)))
    journal.close()
    return harness


def test_every_case_is_played_once_per_mode_static_only_with_options_and_a_resume_runs_the_rest(tmp_path: Path) -> None:
    cases = [CASE, MCQA_CASE]
    manifest = manifest_for(cases, ["single", "council"])
    assert manifest.modes == ["single", "council", "static:single", "static:council"]
    doctors: dict[str, Answerer] = {"single": RuleDoctor("single", "B"), "council": RuleDoctor("council", "A")}
    run(tmp_path, manifest, cases, doctors)
    records = {r.key: r for r in read_episode_records(tmp_path)}
    assert set(records) == expected(manifest) and len(records) == 6  # no static mode on the case without options
    played = records[("c1", "council")]
    assert played.correct and played.verdict.method == "exact"
    assert (played.questions, played.tests, played.cost) == (1, 1, 150.0)
    assert played.interview is not None and played.interview.revealed[0] == "Social history"
    assert records[("q1", "single")].letter == "B" and not records[("q1", "single")].correct
    static = records[("q1", "static:council")]
    assert static.correct and static.interview is None and static.static is not None
    assert static.static.question.text == MCQA_CASE.vignette  # the whole case at once
    # A cut journal line (a kill mid-write) is run again, and only it.
    lines = (tmp_path / "samples.jsonl").read_text(encoding="utf-8").splitlines()
    (tmp_path / "samples.jsonl").write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:40], encoding="utf-8")
    again = EpisodeHarness(Journal(tmp_path), manifest.modes, lambda: make_players(doctors), Judging())
    pending = again.pending(cases)
    assert [(case.id, modes) for case, modes in pending] == [("q1", ["static:council"])]
    run(tmp_path, manifest, cases, doctors)
    assert len(read_episode_records(tmp_path)) == 6


def test_the_report_puts_static_against_interactive_and_keeps_every_dialogue(tmp_path: Path) -> None:
    cases = [CASE, MCQA_CASE]
    manifest = manifest_for(cases, ["single", "council"])
    run(tmp_path, manifest, cases, {"single": RuleDoctor("single", "B"), "council": RuleDoctor("council", "A")})
    summary = write_report(tmp_path, manifest, read_episode_records(tmp_path), 0)
    assert summary.pending == 0
    gap = {(p.first, p.second): p for p in summary.gaps}
    assert (
        set(gap) == {("static:single", "single"), ("static:council", "council")}
        and gap[("static:council", "council")].n == 1
    )
    council = next(r for r in summary.rows if r.mode == "council")
    assert council.accuracy == 1.0 and council.tests == 1.0 and council.cost == 75.0
    text = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "## Static vs interactive" in text
    assert "Doctor (ask): Do you smoke?" in text and "Measurement: Blood tests / Acetylcholine" in text
    assert "(cost 150)" in text
    assert json.loads((tmp_path / "summary.json").read_text())["cases"] == 2
    assert (tmp_path / "report.html").read_text(encoding="utf-8").startswith("<!doctype html>")


def test_a_failed_attempt_is_journaled_retried_and_never_scored(tmp_path: Path) -> None:
    manifest = manifest_for([CASE], ["single"])
    run(tmp_path, manifest, [CASE], {"single": RuleDoctor("single", fail=1)}, retries=1)
    errors = read_errors(tmp_path)
    assert len(errors) == 1 and "does not answer" in errors[0].error
    [record] = read_episode_records(tmp_path)
    assert record.correct and record.failure is None


def test_given_up_cases_stay_pending_and_a_refusal_is_a_failed_case(tmp_path: Path) -> None:
    manifest = manifest_for([CASE], ["single", "council"])
    doctors: dict[str, Answerer] = {"single": RuleDoctor("single", fail=9), "council": RuleDoctor("c", refuse=True)}
    harness = run(tmp_path, manifest, [CASE], doctors, retries=1)
    [record] = read_episode_records(tmp_path)
    assert record.mode == "council" and not record.correct and "HTTP 400" in (record.failure or "")
    assert len(read_errors(tmp_path)) == 2 and harness.aborted is None
    summary = write_report(tmp_path, manifest, read_episode_records(tmp_path), len(read_errors(tmp_path)))
    assert summary.pending == 1 and summary.errors == 2


def test_bad_requests_are_one_line_errors_before_any_model_starts(tmp_path: Path) -> None:
    import pytest

    from medcouncil.scenarios.bench.run import Answering
    from medcouncil.scenarios.episodes.run import EpisodeRequest, bench_episodes, load
    from medcouncil.serving.common.errors import ConfigError
    from medcouncil.serving.session import ModelSource

    def start(**change: object) -> None:
        args: dict[str, object] = {
            "episodes": "agentclinic",
            "resume": None,
            "out": tmp_path / "run",
            "modes": ["single"],
            "limit": 1,
            "budget": 2,
            "patient": "lookup",
            "static": True,
            "threshold": 0.6,
            "judge_endpoint": None,
            "judge_model": None,
            "strict_rows": False,
            "data_dir": None,
        }
        answering = Answering(ModelSource(endpoint="http://127.0.0.1:9/v1"), retries=0, backoff=0.0, give_up_after=1)
        bench_episodes(EpisodeRequest(**{**args, **change}), answering)  # type: ignore[arg-type]

    with pytest.raises(ConfigError, match="episodes are played by single, council, gated"):
        start(modes=["cot"])
    with pytest.raises(ConfigError, match="--patient 'robot': choose lookup or model"):
        start(patient="robot")
    with pytest.raises(ConfigError, match="not an episode run"):
        start(resume=tmp_path)
    with pytest.raises(ConfigError, match="neither an episode file"):
        load(str(tmp_path / "missing.jsonl"), None, False, None)
    broken = tmp_path / "cases.jsonl"
    good = CASE.model_dump_json(exclude={"id"})
    broken.write_text(good + '\n{"opening": "x", "diagnosis": "y"}\n' + good.replace('"c1"', '"c2"') + "\n")
    cases, skipped = load(str(broken), None, False, None)
    assert len(cases) == 2 and len(skipped) == 1 and skipped[0].startswith(f"{broken}:2:")
    with pytest.raises(ConfigError, match=r"cases\.jsonl:2"):
        load(str(broken), None, True, None)


def test_the_command_players_single_council_and_gated_on_scripted_models() -> None:
    from medcouncil.agents.build import Answerers
    from medcouncil.agents.council import Council, CouncilConfig, SingleModel
    from medcouncil.agents.roles import ROLES
    from medcouncil.scenarios.episodes.harness import play
    from medcouncil.scenarios.episodes.run import players
    from medcouncil.serving.replay import ReplayModel
    from medcouncil.tools.chunking import Document
    from medcouncil.tools.search import InMemoryKnowledge

    knowledge = InMemoryKnowledge([Document(text="Asthma: wheeze after exercise.", source="asthma.md")])
    # gated: the single model asks once, commits, then the gate's constrained choice is sure (A): no council.
    model = ReplayModel(["ASK: Do you wheeze after exercise?", "DIAGNOSIS: Asthma", "A"])
    answerers = Answerers(
        council=Council(model, knowledge),
        single=SingleModel(model),
        model=model,  # type: ignore[arg-type]
        roles=dict.fromkeys(ROLES, model),
        knowledge=knowledge,
        config=CouncilConfig(),
    )
    made = players(answerers, EpisodeConfig(modes=["single", "council", "gated"]))
    assert set(made.doctors) == {"single", "council", "gated"}
    assert made.doctors["gated"][0].name == "single" and made.doctors["gated"][1].name == "gated"
    record = asyncio.run(play(MCQA_CASE, "gated", made, budget=3, judging=Judging()))
    assert record.correct and record.letter == "A" and record.questions == 1
    assert record.interview is not None and record.interview.doctor_episodes[-1].escalated is False
    assert record.interview.revealed == ["History"]


def test_a_repeated_case_id_is_renamed_so_both_cases_are_played(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from medcouncil.scenarios.episodes.run import load

    path = tmp_path / "cases.jsonl"
    other = CASE.model_copy(update={"diagnosis": "Pulmonary embolism"})
    path.write_text("".join(case.model_dump_json() + "\n" for case in (CASE, other, CASE)))
    cases, skipped = load(str(path), None, False, None)
    assert [case.id for case in cases] == [CASE.id, f"{CASE.id}#2", f"{CASE.id}#3"] and not skipped
    assert cases[1].diagnosis == "Pulmonary embolism"  # file order: the same ids again on a resume
    assert f"2 cases repeat an earlier one's id: renamed {CASE.id}#2, {CASE.id}#3" in capsys.readouterr().err
