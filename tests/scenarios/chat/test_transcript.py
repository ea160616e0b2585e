from __future__ import annotations

from pathlib import Path

from medcouncil.agents.protocol import Episode, Question, Turn
from medcouncil.scenarios.chat.transcript import read_transcript, transcript_paths, write_transcript
from medcouncil.tools.knowledge import Evidence


def test_transcript_round_trip_jsonl_and_markdown(tmp_path: Path) -> None:
    evidence = Evidence(id="c1", text="Asthma note.", score=0.61, source="starter/asthma.md")
    episodes = [
        Episode(
            question=Question(text="천식인가요?", options={"A": "Asthma", "B": "Gout"}),
            answerer="council",
            answer="천식입니다.",
            letter="A",
            turns=[
                Turn(agent="retriever", content="[1] ...", kind="evidence", evidence=[evidence]),
                Turn(agent="diagnostician", content="Asthma [1].", model_calls=2, prompt_tokens=40),
            ],
        ),
        Episode(question=Question(text="Dose?"), answerer="single", error="endpoint unreachable: http://x/v1"),
    ]
    jsonl, markdown = write_transcript(episodes, tmp_path / "talk.md")
    assert (jsonl, markdown) == transcript_paths(tmp_path / "talk") == (tmp_path / "talk.jsonl", tmp_path / "talk.md")
    assert read_transcript(jsonl) == episodes
    text = markdown.read_text()
    assert "**User:** 천식인가요?" in text and "- A. Asthma" in text
    assert "`starter/asthma.md` (0.61)" in text and "**Error:** endpoint unreachable" in text
    assert "40 prompt + 0 completion tokens, 2 model calls" in text
