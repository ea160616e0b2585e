"""Command-line options shared by every command that needs a model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

EndpointOpt = Annotated[
    str | None, typer.Option("--endpoint", help="OpenAI-compatible base URL (env MEDCOUNCIL_ENDPOINT).")
]
ApiKeyOpt = Annotated[str | None, typer.Option("--api-key", help="API key (env MEDCOUNCIL_API_KEY).")]
ModelOpt = Annotated[str | None, typer.Option("--model", help="Model name at the endpoint (env MEDCOUNCIL_MODEL).")]
ModelConfigOpt = Annotated[
    Path | None,
    typer.Option("--model-config", help="AutoGen model component YAML (env MEDCOUNCIL_MODEL_CONFIG)."),
]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Bypass the completion cache.")]
CouncilOpt = Annotated[
    Path | None, typer.Option("--council", help="Council file: roles, revision rounds, a model per role (YAML).")
]
