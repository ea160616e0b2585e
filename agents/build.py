"""Build the council and the single-model baseline for a command: models (auto-started if needed) and knowledge.

A council file (``--council council.yaml``) sets the roles, the revision rounds and, per role, another model:

```yaml
roles: [translator, retriever, diagnostician, critic]
max_revisions: 1
models:
  critic: {model: medgemma-critic}                 # another LoRA adapter on the same endpoint
  translator: {endpoint: http://127.0.0.1:8001/v1}  # or another endpoint (or model_config_path: x.yaml)
```
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ConfigDict, Field, field_validator
from rich.markup import escape

from medcouncil.agents.council import Council, CouncilConfig, SingleModel
from medcouncil.agents.protocol import ChatModel
from medcouncil.agents.roles import RETRIEVER, ROLES
from medcouncil.serving.client import ModelClient
from medcouncil.serving.common.console import err_console
from medcouncil.serving.common.yamlfile import load_yaml
from medcouncil.serving.components import ClientSettings
from medcouncil.serving.session import ModelSource, beside, open_model
from medcouncil.tools.knowledge import Evidence, KnowledgeBase, KnowledgeConfig, SearchGuard
from medcouncil.tools.search import KnowledgeSearch
from medcouncil.tools.starter_pack import open_knowledge


class RoleModel(ModelSource):
    """A role's model in a council file: a misspelt key (``modle:``) is an error, not the command's model."""

    model_config = ConfigDict(extra="forbid")


class CouncilFile(CouncilConfig):
    """A council configuration file: :class:`CouncilConfig` plus a model per role."""

    model_config = ConfigDict(extra="forbid")

    models: dict[str, RoleModel] = Field(default_factory=dict)
    """Role → model; a role without an entry uses the command's model. A source with only ``model`` names another
    model (a LoRA adapter) on the command's endpoint."""

    @field_validator("models")
    @classmethod
    def _model_roles(cls, models: dict[str, RoleModel]) -> dict[str, RoleModel]:
        wrong = set(models) - (set(ROLES) - {RETRIEVER})
        if wrong:
            raise ValueError(f"no model for {sorted(wrong)}: roles with a model are translator, diagnostician, critic")
        return models

    @classmethod
    def load(cls, path: Path) -> CouncilFile:
        return load_yaml(path, cls, "council file")


def make_council(
    models: Mapping[str, ChatModel], knowledge: KnowledgeSearch, config: CouncilConfig, structure: str | None = None
) -> Council:
    """The council in its configured structure: the pipeline, or the deliberating panel."""
    from medcouncil.agents.panel import Panel

    kind = structure or config.structure
    return Panel(models, knowledge, config) if kind == "panel" else Council(models, knowledge, config)


class LazyKnowledge:
    """A knowledge base still loading in a thread: :meth:`search` waits for it (and raises its loading error)."""

    def __init__(self, loading: concurrent.futures.Future[KnowledgeBase]) -> None:
        self.loading = loading

    def wait(self) -> KnowledgeBase:
        if not self.loading.done():
            with err_console.status("Loading the knowledge base…"):
                return self.loading.result()
        return self.loading.result()

    def search(
        self, query: str, k: int | None = None, threshold: float | None = None, guard: SearchGuard | None = None
    ) -> list[Evidence]:
        return self.wait().search(query, k, threshold, guard)


@dataclass
class Answerers:
    council: Council
    single: SingleModel
    model: ModelClient
    roles: dict[str, ChatModel] = field(default_factory=dict)
    knowledge: KnowledgeSearch | None = None
    config: CouncilConfig = field(default_factory=CouncilConfig)

    def new_council(self, structure: str | None = None) -> Council:
        """Another council on the same models and knowledge: one per concurrent episode (a council runs one at a
        time); ``structure`` overrides the configured one (``pipeline`` or ``panel``)."""
        assert self.knowledge is not None
        return make_council(self.roles, self.knowledge, self.config, structure)


@asynccontextmanager
async def open_answerers(
    source: ModelSource,
    settings: ClientSettings | None = None,
    knowledge: KnowledgeConfig | None = None,
    council: CouncilFile | None = None,
    notice: Callable[[str], None] = lambda text: err_console.print(f"[notice]{escape(text)}[/]"),
) -> AsyncIterator[Answerers]:
    """The embedded server is started here when nothing else is configured, and stopped on exit."""
    council = council or CouncilFile()
    # The knowledge base (importing and loading its embedder: ~6 s on 2 cores) loads in a thread while the model
    # server starts and the user types; the first search waits for it.
    base = LazyKnowledge(concurrent.futures.ThreadPoolExecutor(1).submit(open_knowledge, knowledge))
    async with AsyncExitStack() as stack:
        stack.callback(base.wait)  # never leave a half-opened store behind
        model = await stack.enter_async_context(open_model(source, settings, notice=notice))
        per_role: dict[str, ChatModel] = dict.fromkeys(ROLES, model)
        for role, given in council.models.items():
            role_source: ModelSource = given
            if given.endpoint is None and given.model_config_path is None:
                role_source = beside(model, given.model, given.api_key)
            per_role[role] = await stack.enter_async_context(open_model(role_source, settings, notice=notice))
        config = CouncilConfig.model_validate(council.model_dump(exclude={"models"}))
        yield Answerers(
            council=make_council(per_role, base, config),
            single=SingleModel(model),
            model=model,
            roles=per_role,
            knowledge=base,
            config=config,
        )


def council_file(path: Path | None) -> CouncilFile | None:
    return CouncilFile.load(path) if path is not None else None
