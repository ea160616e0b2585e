"""``medcouncil replay SCENARIO.yaml``: replay a scenario, print it as chat does, check it, keep a transcript."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from medcouncil.scenarios.cli.options import ApiKeyOpt, CouncilOpt, EndpointsOpt, ModelConfigOpt, ModelOpt, NoCacheOpt
from medcouncil.serving.common.console import console
from medcouncil.serving.common.paths import data_dir

if TYPE_CHECKING:  # the council's modules load when a replay starts, not with every command
    from medcouncil.agents.build import CouncilFile
    from medcouncil.agents.protocol import Episode
    from medcouncil.scenarios.chat.replay import Scenario
    from medcouncil.serving.components import ClientSettings
    from medcouncil.serving.session import ModelSource


async def replay_scenario(
    scenario: Scenario, source: ModelSource, settings: ClientSettings, council: CouncilFile | None = None
) -> list[Episode]:
    from medcouncil.agents.build import open_answerers
    from medcouncil.agents.protocol import Episode, Question
    from medcouncil.agents.render import Renderer

    renderer = Renderer(console)
    episodes: list[Episode] = []
    async with open_answerers(source, settings, council=council) as answerers:
        answerer = answerers.council if scenario.mode == "council" else answerers.single
        for number, turn in enumerate(scenario.turns, 1):
            console.rule(f"turn {number}")
            console.print(f"[agent.user]you ›[/] {escape(turn.user)}", markup=True)
            question = Question(text=turn.user, options=turn.options, language=scenario.language)
            async for event in answerer.stream(question, episodes):
                renderer.event(event)
                if isinstance(event, Episode):
                    episodes.append(event)
    return episodes


def replay(
    scenario_path: Annotated[Path, typer.Argument(metavar="SCENARIO.yaml", help="The scenario to replay.")],
    out: Annotated[Path | None, typer.Option(help="Folder for the transcript (default: user data/replays).")] = None,
    endpoint: EndpointsOpt = None,
    api_key: ApiKeyOpt = None,
    model: ModelOpt = None,
    model_config: ModelConfigOpt = None,
    no_cache: NoCacheOpt = False,
    council: CouncilOpt = None,
) -> None:
    """Replay a scenario; exits non-zero when a check fails."""
    from medcouncil.agents.build import council_file
    from medcouncil.scenarios.chat.replay import CheckResult, check_turn, load_scenario
    from medcouncil.scenarios.chat.transcript import write_transcript
    from medcouncil.serving.components import ClientSettings
    from medcouncil.serving.session import ModelSource

    scenario = load_scenario(scenario_path)
    config = council_file(council)
    source = ModelSource.resolve(model_config, endpoint, api_key, model)
    episodes = asyncio.run(replay_scenario(scenario, source, ClientSettings(cache=not no_cache), config))
    slug = re.sub(r"[^a-z0-9]+", "-", scenario.name.lower()).strip("-")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    folder = out or data_dir() / "replays"
    jsonl, markdown = write_transcript(episodes, folder / f"{stamp}-{slug}", title=scenario.name)
    results: list[CheckResult] = []
    for number, (turn, episode) in enumerate(zip(scenario.turns, episodes, strict=True), 1):
        results += check_turn(number, turn.expect, episode)
    table = Table("turn", "check", "result", "detail", title=f"checks · {scenario.name}")
    for result in results:
        mark = "[green]pass[/]" if result.passed else "[error]FAIL[/]"
        table.add_row(str(result.turn), result.check, mark, result.detail.replace("\n", " ")[:80])
    console.print(table)
    console.print(f"[notice]transcript: {escape(str(jsonl))} · {escape(str(markdown))}[/]")
    failed = sum(not result.passed for result in results)
    if failed:
        console.print(f"[error]{failed} of {len(results)} checks failed[/]")
        raise typer.Exit(1)
    console.print(f"[green]all {len(results)} checks passed[/]")
