"""Transcripts of conversations: JSONL (one episode a line, every turn) and Markdown, side by side."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from medcouncil.agents.protocol import Episode

FORMAT_VERSION = 1


def transcript_paths(path: Path) -> tuple[Path, Path]:
    """``x`` / ``x.jsonl`` / ``x.md`` → (``x.jsonl``, ``x.md``)."""
    base = path.with_suffix("") if path.suffix in (".jsonl", ".md") else path
    return base.with_name(base.name + ".jsonl"), base.with_name(base.name + ".md")


def episode_markdown(number: int, episode: Episode) -> str:
    lines = [f"## Turn {number}", "", f"**User:** {episode.question.text}", ""]
    if episode.question.options:
        lines += [f"- {letter}. {text}" for letter, text in episode.question.options.items()] + [""]
    for turn in episode.turns:
        lines.append(f"**{turn.agent}** ({turn.kind}, {turn.model_calls} calls, {turn.latency_s:.2f} s)")
        lines.append("")
        if turn.evidence:
            lines += [f"{n}. `{e.source}` ({e.score:.2f}) {e.text}" for n, e in enumerate(turn.evidence, 1)]
        else:
            lines.append(turn.content)
        lines.append("")
    if episode.error:
        lines += [f"**Error:** {episode.error}", ""]
    answer = episode.answer or "(no answer)"
    lines += [f"**Final answer ({episode.answerer}):** {answer}", ""]
    lines.append(
        f"_{episode.prompt_tokens} prompt + {episode.completion_tokens} completion tokens, "
        f"{episode.model_calls} model calls, {episode.wall_time_s:.2f} s_"
    )
    return "\n".join(lines) + "\n"


def write_transcript(
    episodes: Sequence[Episode], path: Path, title: str = "medcouncil conversation"
) -> tuple[Path, Path]:
    """Write both files; returns their paths."""
    jsonl, markdown = transcript_paths(path)
    jsonl.parent.mkdir(parents=True, exist_ok=True)
    with jsonl.open("w", encoding="utf-8") as handle:
        for episode in episodes:
            handle.write(episode.model_dump_json() + "\n")
    body = "".join(episode_markdown(n, e) + "\n" for n, e in enumerate(episodes, 1))
    markdown.write_text(f"# {title}\n\n_transcript format {FORMAT_VERSION}_\n\n{body}", encoding="utf-8")
    return jsonl, markdown


def read_transcript(path: Path) -> list[Episode]:
    jsonl, _ = transcript_paths(path)
    return [Episode.model_validate_json(line) for line in jsonl.read_text(encoding="utf-8").splitlines() if line]
