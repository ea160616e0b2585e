"""The command-line options that several commands share, declared once: the same names, limits and help everywhere.

Three blocks:

* **the model**: ``--endpoint``, ``--api-key``, ``--model``, ``--model-config`` (resolved in one place,
  :meth:`~medcouncil.serving.session.ModelSource.resolve`), ``--no-cache`` and ``--council``;
* **the dataset**: ``--dataset``, ``--subset``, ``--split``, ``--limit``, ``--fields``, ``--data-dir``, ``--seed``,
  ``--strict-rows``;
* **the run's persistence**: ``--concurrency``, ``--retries``, ``--backoff``, ``--give-up-after``.

A command declares ``endpoint: EndpointOpt = None`` and so on; what an option means in one command only (``bench
--mode``, ``serve --port``) stays with that command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

# The model.
EndpointOpt = Annotated[
    str | None, typer.Option("--endpoint", help="OpenAI-compatible base URL (env MEDCOUNCIL_ENDPOINT).")
]
EndpointsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--endpoint",
        help="OpenAI-compatible base URL (env MEDCOUNCIL_ENDPOINT); repeat it (or comma-separate) for replicas of "
        "one model: requests go to the least-busy healthy one.",
    ),
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

# The dataset.
DATASET_HELP = "A registered name (medqa, medmcqa, mmlu, ...), an HF dataset id (owner/name) or a path."
DatasetOpt = Annotated[str | None, typer.Option("--dataset", help=DATASET_HELP)]
DatasetsOpt = Annotated[list[str] | None, typer.Option("--dataset", help=f"{DATASET_HELP} Repeatable.")]
SubsetOpt = Annotated[
    str | None,
    typer.Option("--subset", help="Subset of --dataset: KorMedMCQA exam, MedQA step, MMLU subject, HF config."),
]
SplitOpt = Annotated[str | None, typer.Option("--split", help="HF split of --dataset (default: its test split).")]
LimitOpt = Annotated[int | None, typer.Option("--limit", min=1, help="The first N items (of each dataset).")]
FIELDS_HELP = (
    "Field mapping of a file in no known format: 'question=stem;options=opt1,opt2,opt3;answer=correct' plus optional "
    "'answer_format=letter|index0|index1|text', 'id=qid', 'subset=subject'. Without it, common names are guessed "
    "and the guess printed."
)
FieldsOpt = Annotated[str | None, typer.Option("--fields", help=FIELDS_HELP)]
DataDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--data-dir", help="Where registered datasets live (env MEDCOUNCIL_DATA_DIR, else ./data or ../shared/data)."
    ),
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of everything drawn at random (recorded with the run).")]
StrictRowsOpt = Annotated[bool, typer.Option("--strict-rows", help="A malformed row stops the command.")]

# The run's persistence.
ConcurrencyOpt = Annotated[int, typer.Option("--concurrency", min=1, help="Items answered at once.")]
RetriesOpt = Annotated[int, typer.Option("--retries", min=0, help="Retries of a failed item (with backoff).")]
BackoffOpt = Annotated[
    float, typer.Option("--backoff", min=0, help="Seconds before the first retry; doubles each time.")
]
GiveUpAfterOpt = Annotated[
    int, typer.Option("--give-up-after", min=1, help="Stop after this many items fail in a row.")
]
