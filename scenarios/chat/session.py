"""The terminal chat session: the council (or the single model) turn by turn, with commands and Ctrl-C per turn."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from rich.markup import escape

from medcouncil.serving.common.console import console
from medcouncil.serving.common.errors import MedcouncilError, first_line

if TYPE_CHECKING:  # the council's modules load when a chat starts, not with every command
    from medcouncil.agents.build import Answerers
    from medcouncil.agents.protocol import Episode


HELP = (
    "Commands: /single (toggle single-model mode) · /lang ko|en|auto · /reset · /save FILE · /quit. "
    "Ctrl-C cancels the current turn."
)


Language = Literal["auto", "ko", "en"]


class ChatSession:
    """One conversation: its mode, language, episodes, and the event loop its clients live on."""

    def __init__(self, loop: asyncio.AbstractEventLoop, answerers: Answerers, single: bool, language: Language) -> None:
        self.loop = loop
        self.answerers = answerers
        self.single = single
        self.language: Language = language
        from medcouncil.agents.render import Renderer

        self.episodes: list[Episode] = []
        self.renderer = Renderer(console)

    def command(self, line: str) -> bool:
        """Handle a slash command; False ends the session."""
        name, _, argument = line.partition(" ")
        argument = argument.strip()
        if name in ("/quit", "/exit"):
            return False
        if name == "/single":
            self.single = not self.single
            console.print(f"[notice]mode: {'single model' if self.single else 'council'}[/]")
        elif name == "/lang" and argument in ("ko", "en", "auto"):
            self.language = argument  # type: ignore[assignment]
            console.print(f"[notice]language: {escape(argument)}[/]")
        elif name == "/reset":
            self.episodes.clear()
            console.print("[notice]conversation cleared[/]")
        elif name == "/save" and argument:
            from medcouncil.scenarios.chat.transcript import write_transcript

            jsonl, markdown = write_transcript(self.episodes, Path(argument).expanduser())
            console.print(f"[notice]saved {escape(str(jsonl))} and {escape(str(markdown))}[/]")
        else:
            console.print(f"[notice]{HELP}[/]")
        return True

    async def _answer(self, text: str) -> Episode:
        from medcouncil.agents.protocol import Episode, Question

        answerer = self.answerers.single if self.single else self.answerers.council
        question = Question(text=text, language=self.language)
        episode: Episode | None = None
        async for event in answerer.stream(question, self.episodes):
            self.renderer.event(event)
            if isinstance(event, Episode):
                episode = event
        assert episode is not None
        return episode

    def engine_ready(self) -> bool:
        """False when the engine behind the model is gone and cannot be brought back; an engine this command
        started itself is restarted once (same port, so every client keeps its URL)."""
        from medcouncil.serving.session import EngineLink

        link = getattr(self.answerers.model, "engine", None)
        if not isinstance(link, EngineLink) or link.failure() is None:
            return True
        if not link.can_restart:
            console.print(
                "[error]error:[/] the engine is down; it was not started by this chat or was restarted "
                "once already: check `medcouncil serve --status`, or /quit and start again"
            )
            return False
        console.print("[notice]the engine died: restarting it…[/]")
        try:
            link.restart()
        except MedcouncilError as error:
            console.print(f"[error]error:[/] {escape(first_line(error))}")
            return False
        return True

    def turn(self, text: str) -> None:
        """One question; Ctrl-C cancels it and keeps the session; a failed turn is reported and the session lives on."""
        if not self.engine_ready():
            return
        task = self.loop.create_task(self._answer(text))
        self.loop.add_signal_handler(signal.SIGINT, task.cancel)
        try:
            episode = self.loop.run_until_complete(task)
        except asyncio.CancelledError:
            console.print("\n[warning]turn cancelled[/]")
            return
        except MedcouncilError as error:
            console.print(f"\n[error]error:[/] {escape(str(error))}")
            return
        except Exception as error:  # AgentChat re-raises some failures as RuntimeError: the session lives on
            console.print(f"\n[error]error:[/] {escape(f'{type(error).__name__}: {error}'.splitlines()[0])}")
            return
        finally:
            self.loop.remove_signal_handler(signal.SIGINT)
        if episode.error is None:
            self.episodes.append(episode)

    def run(self) -> None:
        console.print(f"[notice]medcouncil chat · {escape(self.answerers.model.name)} · {HELP}[/]")
        while True:
            try:
                line = console.input("[agent.user]you ›[/] ").strip()
            except EOFError:
                break
            except KeyboardInterrupt:
                console.print("\n[notice]/quit to leave[/]")
                continue
            if not line:
                continue
            if line.startswith("/"):
                if not self.command(line):
                    break
                continue
            self.turn(line)
