"""Build the council and the single-model baseline for a command: model (auto-started if needed) and knowledge."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from medcouncil.agents.council import Council, CouncilConfig, SingleModel
from medcouncil.serving.client import ClientSettings, ModelClient
from medcouncil.serving.console import err_console
from medcouncil.serving.session import ModelSource, open_model
from medcouncil.tools.knowledge import KnowledgeConfig, open_knowledge


@dataclass
class Answerers:
    council: Council
    single: SingleModel
    model: ModelClient


@asynccontextmanager
async def open_answerers(
    source: ModelSource,
    settings: ClientSettings | None = None,
    knowledge: KnowledgeConfig | None = None,
    council: CouncilConfig | None = None,
    notice: Callable[[str], None] = lambda text: err_console.print(f"[notice]{text}[/]"),
) -> AsyncIterator[Answerers]:
    """The embedded server is started here when nothing else is configured, and stopped on exit."""
    with err_console.status("Loading the knowledge base…"):
        base = open_knowledge(knowledge)
    async with open_model(source, settings, notice=notice) as model:
        yield Answerers(council=Council(model, base, council), single=SingleModel(model), model=model)
