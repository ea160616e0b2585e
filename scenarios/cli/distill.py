"""``medcouncil distill``: rationales from a teacher endpoint, journaled and resumable.

The distillation itself is ``scenarios/training/distill.py``.
"""

from __future__ import annotations

import asyncio
import os
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from medcouncil.scenarios.cli.options import (
    ConcurrencyOpt,
    DataDirOpt,
    DatasetOpt,
    FieldsOpt,
    LimitOpt,
    SplitOpt,
    SubsetOpt,
)
from medcouncil.serving.common.console import console, err_console
from medcouncil.serving.common.errors import ConfigError, MedcouncilError, first_line

if TYPE_CHECKING:
    from medcouncil.scenarios.datasets.samples import Sample
    from medcouncil.scenarios.training.distill import DistillManifest

TEACHER_KEY_ENV = "MEDCOUNCIL_TEACHER_API_KEY"


def _manifest_path(out: Path) -> Path:
    return out.with_suffix(".run.json")


def _read_manifest(out: Path) -> DistillManifest:
    from medcouncil.scenarios.training.distill import SCHEMA_VERSION, DistillManifest
    from medcouncil.serving.common.jsonl import read_versioned

    path = _manifest_path(out)
    if not path.is_file():
        raise ConfigError(f"{path}: missing, so {out} cannot be resumed (start it again under another --out)")
    return read_versioned(path, DistillManifest, SCHEMA_VERSION, "a distillation manifest")


def distill(
    out: Annotated[Path, typer.Option(help="The rationales JSONL (journal; its settings: OUT.run.json).")],
    teacher: Annotated[
        list[str] | None,
        typer.Option(help="The teacher's OpenAI-compatible base URL (…/v1); repeat it for replicas of the teacher."),
    ] = None,
    teacher_model: Annotated[
        str | None, typer.Option(help="The teacher's model name, as the endpoint serves it.")
    ] = None,
    dataset: DatasetOpt = None,
    subset: SubsetOpt = None,
    split: SplitOpt = None,
    limit: LimitOpt = None,
    fields: FieldsOpt = None,
    tries: Annotated[int, typer.Option(min=1, help="Replies asked per item at most (rejection sampling).")] = 4,
    temperature: Annotated[float, typer.Option(min=0, help="Sampling temperature of every try.")] = 0.7,
    max_tokens: Annotated[int, typer.Option(min=16, help="Tokens per reply at most.")] = 512,
    pairs: Annotated[
        bool | None,
        typer.Option(
            "--pairs/--no-pairs",
            help="Ask on after a gold reply until one misses (within --tries): preference pairs for DPO.",
        ),
    ] = None,
    concurrency: ConcurrencyOpt = 2,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds per request.")] = 300.0,
    resume: Annotated[bool, typer.Option(help="Continue OUT with its own settings (only missing items).")] = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Ask a teacher model for rationales; keep those whose final answer is the gold option.

    The teacher's API key, if it needs one, is read from MEDCOUNCIL_TEACHER_API_KEY (never from the command line).
    """
    from medcouncil.scenarios.datasets.generic import FieldMap
    from medcouncil.scenarios.datasets.registry import load_dataset
    from medcouncil.scenarios.training.distill import (
        SCHEMA_VERSION,
        DistillManifest,
        DistillSettings,
        read_rows,
        tally,
    )
    from medcouncil.serving.common.locks import held

    out.parent.mkdir(parents=True, exist_ok=True)
    with held(out.with_name(out.name + ".lock"), f"the distillation output {out}"):
        if resume:
            manifest = _read_manifest(out)
            manifest.schema_version = SCHEMA_VERSION  # rows from now on are of this version (older ones still read)
            if teacher_model and teacher_model != manifest.settings.teacher_model:
                raise ConfigError(
                    f"{out} was distilled from {manifest.settings.teacher_model!r}, not "
                    f"{teacher_model!r}: start a new --out for another teacher"
                )
            if pairs is not None and pairs != manifest.settings.pairs:
                said = "--pairs" if manifest.settings.pairs else "--no-pairs"
                raise ConfigError(f"{out} was distilled with {said}: a resume keeps it (start a new --out)")
            data = manifest.dataset
            samples, info = load_dataset(
                data.dataset,
                data.subset,
                data.split,
                FieldMap.parse(manifest.fields) if manifest.fields else None,
                False,
                data_dir,
            )
            if info.fingerprint != data.fingerprint:
                raise ConfigError(f"{data.source}: the dataset changed since {out} was started: start a new --out")
            samples = samples[: data.rows]
            manifest.teacher = ",".join(teacher) if teacher else manifest.teacher
        else:
            if out.exists() and out.stat().st_size:
                raise ConfigError(f"{out} already has rows: --resume to continue it, or choose another --out")
            if not (teacher and teacher_model and dataset):
                raise ConfigError("--teacher, --teacher-model and --dataset are needed (or --resume OUT)")
            samples, info = load_dataset(
                dataset, subset, split, FieldMap.parse(fields) if fields else None, False, data_dir
            )
            samples = samples[:limit] if limit else samples
            info = info.model_copy(update={"rows": len(samples)})
            settings = DistillSettings(
                teacher_model=teacher_model,
                tries=tries,
                temperature=temperature,
                max_tokens=max_tokens,
                pairs=bool(pairs),
            )
            manifest = DistillManifest(
                medcouncil_version=version("medcouncil"),
                dataset=info,
                fields=fields,
                settings=settings,
                teacher=",".join(teacher),
            )
        path = _manifest_path(out)
        path.write_text(manifest.model_dump_json(indent=2), encoding="utf-8")
        manifest.stopped = None
        try:
            asyncio.run(_run(manifest, samples, out, concurrency, timeout))
        except (KeyboardInterrupt, MedcouncilError) as error:
            manifest.stopped = first_line(error) if isinstance(error, MedcouncilError) else "interrupted"
            err_console.print(
                f"[warning]stopped:[/] finished rows are in {escape(str(out))}; continue with "
                f"medcouncil distill --resume --out {escape(str(out))}",
                soft_wrap=True,
            )
            raise
        finally:
            manifest.summary = tally(read_rows(out))
            manifest.touch()
            path.write_text(manifest.model_dump_json(indent=2), encoding="utf-8")
    counts = manifest.summary
    tried = manifest.settings.tries
    line = (
        f"{counts['kept']} rationales kept, {counts['rejected']} items rejected after {tried} tries, "
        f"{counts['refused']} refused by the endpoint ({counts['replies']} replies); "
        f"{counts.get('pairs', 0)} preference pairs (a reply reaching the gold option and one missing it)"
    )
    console.print(line, markup=False, soft_wrap=True)
    console.print(
        f"wrote {out}; train on it with: medcouncil data build --dataset {manifest.dataset.source} "
        f"--rationales {out} --out …",
        markup=False,
        soft_wrap=True,
    )
    if counts.get("pairs"):
        console.print(
            f"prefer the gold rationales with: medcouncil finetune --method dpo --data {out}",
            markup=False,
            soft_wrap=True,
        )


async def _run(manifest: DistillManifest, items: list[Sample], out: Path, concurrency: int, timeout: float) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from medcouncil.scenarios.training.distill import Distilled, distil, read_rows
    from medcouncil.serving.client import ModelClient
    from medcouncil.serving.components import ClientSettings, endpoint_component
    from medcouncil.serving.health import describe_endpoint
    from medcouncil.serving.session import link_for, pooled_client

    settings = manifest.settings
    key = os.environ.get(TEACHER_KEY_ENV)
    # No response cache: every try must be a new sample from the teacher.
    client_settings = ClientSettings(cache=False, temperature=settings.temperature, timeout=timeout)
    urls = [url.strip() for url in manifest.teacher.split(",") if url.strip()]
    if len(urls) > 1:  # replicas of the teacher: checked to be the same model, then the least busy asked
        client = pooled_client(urls, key, settings.teacher_model, client_settings, lambda line: err_console.print(
            f"[warning]{escape(line)}[/]", soft_wrap=True))  # fmt: skip
    else:
        info = describe_endpoint(urls[0], key, settings.teacher_model)
        # A teacher that medcouncil started (serve --detach) is watched: its death is named, not "unreachable".
        client = ModelClient(
            endpoint_component(info, client_settings), info, client_settings, engine=link_for(info.base_url)
        )

    async def ask(messages: list[dict[str, str]], temperature: float, max_tokens: int) -> tuple[str, int, int]:
        from autogen_core.models import SystemMessage, UserMessage

        history = [
            SystemMessage(content=m["content"])
            if m["role"] == "system"
            else UserMessage(content=m["content"], source="user")
            for m in messages
        ]
        result = await client.chat(history, temperature=temperature, max_tokens=max_tokens)
        text = result.content if isinstance(result.content, str) else ""
        return text, result.usage.prompt_tokens, result.usage.completion_tokens

    finished = read_rows(out)
    done, kept = len(finished), [sum(r.kept for r in finished)]
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    try:
        with Progress(*columns, console=err_console) as progress:
            task = progress.add_task(f"distilling · {kept[0]} kept", total=len(items), completed=done)

            def advance(row: Distilled) -> None:
                kept[0] += row.kept
                progress.update(task, advance=1, description=f"distilling · {kept[0]} kept")

            await distil(items, ask, settings, manifest.teacher, out, concurrency, advance)
    finally:
        await client.close()
