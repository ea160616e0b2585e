"""Showing a conversation in the terminal.

Each agent in its colour, evidence as a sources table, the final answer highlighted.
"""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from medcouncil.agents.protocol import Episode, Event, TokenEvent, Turn, TurnEvent
from medcouncil.serving.common.console import console as default_console

QUIET_AGENTS = {"retriever"}
"""Agents whose turn is shown as a table when it ends rather than streamed."""


class Renderer:
    """Feed it an answerer's events; it prints them as they come."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or default_console
        self._speaking: str | None = None

    def _style(self, agent: str) -> str:
        return f"agent.{agent}" if agent in {"retriever", "translator", "diagnostician", "critic"} else "agent.user"

    def event(self, event: Event) -> None:
        if isinstance(event, TokenEvent):
            if event.agent in QUIET_AGENTS:
                return
            if self._speaking != event.agent:
                self._end_line()
                self.console.print(f"[{self._style(event.agent)}]{event.agent} ›[/] ", end="")
                self._speaking = event.agent
            self.console.print(event.text, end="", markup=False, highlight=False)
        elif isinstance(event, TurnEvent):
            self._turn(event.turn)
        else:
            self._episode(event)

    def _end_line(self) -> None:
        if self._speaking is not None:
            self.console.print()
            self._speaking = None

    def _turn(self, turn: Turn) -> None:
        self._end_line()
        if turn.agent == "retriever":
            self.sources(turn)

    def sources(self, turn: Turn) -> None:
        if not turn.evidence:
            self.console.print(f"[{self._style('retriever')}]retriever ›[/] {escape(turn.content)}")
            return
        table = Table(title="retriever › sources", title_style=self._style("retriever"), show_lines=False)
        for column in ("#", "score", "dense #", "BM25 #", "source", "excerpt"):
            table.add_column(column, overflow="fold")
        for number, evidence in enumerate(turn.evidence, 1):
            excerpt = evidence.text if len(evidence.text) < 160 else evidence.text[:157] + "…"
            ranks = [str(rank) if rank else "–" for rank in (evidence.dense_rank, evidence.lexical_rank)]
            table.add_row(
                str(number), f"{evidence.score:.2f}", *ranks, escape(evidence.title or evidence.source), escape(excerpt)
            )
        self.console.print(table)

    def _episode(self, episode: Episode) -> None:
        self._end_line()
        if episode.error:
            self.console.print(f"[error]error:[/] {escape(str(episode.error))}")
            return
        body = escape(episode.answer or "(no answer)")
        if episode.probabilities and episode.letter:
            body += f"\n[usage]p({episode.letter}) = {episode.probabilities.get(episode.letter, 0):.2f}[/]"
        self.console.print(Panel(body, title=f"final answer · {episode.answerer}", border_style="answer"))
        self.console.print(
            f"[usage]{episode.prompt_tokens} prompt + {episode.completion_tokens} completion tokens · "
            f"{episode.model_calls} model calls · {episode.wall_time_s:.1f} s[/]"
        )
