"""``medcouncil chat``: an interactive terminal conversation with the council (or the single model)."""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Annotated

import typer

from medcouncil.scenarios.cli.options import ApiKeyOpt, CouncilOpt, EndpointsOpt, ModelConfigOpt, ModelOpt, NoCacheOpt
from medcouncil.serving.common.errors import MedcouncilError

if TYPE_CHECKING:  # the council's modules load when a chat starts, not with every command
    pass


def chat(
    single: Annotated[bool, typer.Option("--single", help="Start in single-model mode.")] = False,
    lang: Annotated[str, typer.Option("--lang", help="auto, ko or en.")] = "auto",
    endpoint: EndpointsOpt = None,
    api_key: ApiKeyOpt = None,
    model: ModelOpt = None,
    model_config: ModelConfigOpt = None,
    no_cache: NoCacheOpt = False,
    council: CouncilOpt = None,
    case: Annotated[
        str | None,
        typer.Option(
            help="FILE[:N]: be the doctor of case N (default 1) of an episode file "
            "or dataset; the diagnosis is judged at the end."
        ),
    ] = None,
    patient: Annotated[str, typer.Option(help="With --case: lookup (no model needed) or model.")] = "lookup",
    budget: Annotated[int | None, typer.Option(min=1, help="With --case: actions before you must commit.")] = None,
) -> None:
    """Talk to the council in the terminal (the embedded model by default), or be the doctor of a case (--case)."""
    if lang not in ("auto", "ko", "en"):
        raise MedcouncilError(f"--lang {lang!r}: choose auto, ko or en")
    if case is not None:
        from medcouncil.scenarios.episodes.run import chat_case
        from medcouncil.serving.session import ModelSource

        chat_case(case, patient, budget, ModelSource.resolve(model_config, endpoint, api_key, model), no_cache)
        return
    from medcouncil.agents.build import council_file, open_answerers
    from medcouncil.serving.components import ClientSettings
    from medcouncil.serving.session import ModelSource

    source = ModelSource.resolve(model_config, endpoint, api_key, model)
    config = council_file(council)
    loop = asyncio.new_event_loop()
    stack = AsyncExitStack()
    try:
        answerers = loop.run_until_complete(
            stack.enter_async_context(open_answerers(source, ClientSettings(cache=not no_cache), council=config))
        )
        from medcouncil.scenarios.chat.session import ChatSession

        ChatSession(loop, answerers, single, lang).run()  # type: ignore[arg-type]
    finally:
        with contextlib.suppress(Exception):
            loop.run_until_complete(stack.aclose())
        loop.close()
