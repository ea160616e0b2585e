"""``medcouncil data build``: role-shaped training data from benchmark datasets, BioASQ files and parallel text,
decontaminated against every evaluation set found locally, with a data card beside it."""

from __future__ import annotations

import json
import statistics
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from medcouncil.scenarios.cli.options import DataDirOpt, DatasetsOpt, FieldsOpt, LimitOpt, SeedOpt, SplitOpt, SubsetOpt
from medcouncil.serving.common.console import console, err_console
from medcouncil.serving.common.errors import ConfigError, first_line
from medcouncil.serving.training.data import ChatExample, first_error

if TYPE_CHECKING:
    from medcouncil.scenarios.training.sft import FreeText

data_app = typer.Typer(
    help="Training data for the council: role-shaped SFT sets, decontaminated.", no_args_is_help=True
)
DEFAULT_MIX = "diagnostician=0.6,critic=0.3,single=0.1"
TRANSLATOR_SHARE = 0.3
"""The translator's weight added to the default mix when ``--parallel`` pairs are given."""


def _pairs(path: Path) -> list[object]:
    from pydantic import ValidationError

    from medcouncil.scenarios.training.sft import Pair
    from medcouncil.serving.common.jsonl import BadLine, iter_jsonl

    pairs: list[object] = []
    try:
        for number, record in iter_jsonl(path):
            if isinstance(record, BadLine):
                raise ConfigError(str(record))
            try:
                pairs.append(Pair.model_validate(record))
            except ValidationError as error:
                reason = "expected an object with 'ko' and 'en' texts, neither blank"
                if error.errors()[0]["type"] == "value_error":  # the pair's own check (swapped texts)
                    reason = first_error(error)
                raise ConfigError(f"{path}:{number}: {reason}") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read ({error.strerror})") from None
    return pairs


def _token_lengths(examples: list[ChatExample], base: str | None) -> dict[str, object]:
    """Token lengths of the conversations as ``finetune`` renders them (the base's chat template and tokenizer),
    overall and per role; a tokenizer that cannot be loaded is a note, not a failure."""
    from medcouncil.scenarios.training.sft import role_of
    from medcouncil.serving.common.errors import MedcouncilError
    from medcouncil.serving.common.extras import missing

    if absent := missing("train"):
        return {"note": f"not counted: the tokenizer needs the 'train' extra ({', '.join(absent)} not installed)"}
    from medcouncil.serving.training.data import tokenize
    from medcouncil.serving.training.model import load_tokenizer, resolve_base

    try:
        info = resolve_base(base)
        tokenizer = load_tokenizer(info)
    except (MedcouncilError, OSError, ValueError) as error:
        return {"note": f"not counted: {first_line(error)}"}
    counts = [len(tokenize(tokenizer, example, 1 << 30).input_ids) for example in examples]
    roles: dict[str, list[int]] = {}
    for example, count in zip(examples, counts, strict=True):
        roles.setdefault(role_of(example), []).append(count)
    return {
        "tokenizer": info.name,
        "min": min(counts),
        "median": statistics.median(counts),
        "max": max(counts),
        "total": sum(counts),
        "over_512": sum(c > 512 for c in counts),
        "median_per_role": {role: statistics.median(c) for role, c in sorted(roles.items())},
    }


def _weights(mix: str, parallel: Path | None) -> dict[str, float]:
    """The role weights of ``--mix``; with ``--parallel``, the default mix gives the translator its share.

    Raises: ConfigError: a malformed mix, or one that leaves the pairs given unused.
    """
    from medcouncil.scenarios.training.sft import parse_mix

    if parallel is not None and mix == DEFAULT_MIX:
        mix += f",translator={TRANSLATOR_SHARE}"  # the pairs given are used; an explicit --mix says how much
    try:
        weights = parse_mix(mix)
    except ValueError as error:
        raise ConfigError(f"--mix: {error}") from None
    if parallel is not None and not weights.get("translator"):
        raise ConfigError(
            f"--parallel {parallel}: --mix gives the translator no weight, so no pair would be used: add translator=W"
        )
    return weights


def _bioasq(paths: list[Path], sources: dict[str, int], skipped_rows: dict[str, int]) -> list[FreeText]:
    """The free-text questions of the BioASQ files; their counts (and questions skipped, warned) go on the card."""
    from medcouncil.scenarios.datasets.samples import print_skipped
    from medcouncil.scenarios.training.sft import read_bioasq

    free: list[FreeText] = []
    for path in paths:
        questions, unused = read_bioasq(path)
        print_skipped(unused, what="BioASQ question")
        free += questions
        sources[str(path)] = len(questions)
        if unused:
            skipped_rows[str(path)] = len(unused)
    return free


def build(
    out: Annotated[Path, typer.Option(help="The chat JSONL to write (its data card: OUT.card.json).")],
    dataset: DatasetsOpt = None,
    subset: SubsetOpt = None,
    split: SplitOpt = None,
    limit: LimitOpt = None,
    fields: FieldsOpt = None,
    bioasq: Annotated[list[Path] | None, typer.Option(help="BioASQ golden JSON (repeatable).")] = None,
    parallel: Annotated[Path | None, typer.Option(help="Korean/English pairs, JSONL of {ko, en} (translator).")] = None,
    rationales: Annotated[
        list[Path] | None,
        typer.Option(
            help="A medcouncil distill output: its kept rationales become the diagnostician's reasoning (repeatable)."
        ),
    ] = None,
    mix: Annotated[
        str,
        typer.Option(
            help="Role weights, e.g. diagnostician=0.6,critic=0.3,single=0.1 (translator=0.3 added with --parallel)."
        ),
    ] = DEFAULT_MIX,
    size: Annotated[int | None, typer.Option(min=1, help="Examples to write (default: one per item).")] = None,
    seed: SeedOpt = 0,
    decontaminate: Annotated[bool, typer.Option(help="Drop items found in evaluation sets.")] = True,
    against: Annotated[list[Path] | None, typer.Option(help="More evaluation files to check against.")] = None,
    data_dir: DataDirOpt = None,
    base: Annotated[
        str | None,
        typer.Option(
            help="The model whose tokenizer counts the card's token lengths "
            "(as finetune --base; default: the embedded Gemma)."
        ),
    ] = None,
) -> None:
    """Write role-shaped SFT data in the council's own prompts, with evaluation items removed."""
    from medcouncil.scenarios.datasets.generic import FieldMap
    from medcouncil.scenarios.datasets.registry import load_dataset
    from medcouncil.scenarios.datasets.samples import print_skipped
    from medcouncil.scenarios.training import decontamination as decon
    from medcouncil.scenarios.training.sft import Pair, role_pools, target_mix, taught_key
    from medcouncil.scenarios.training.sft import mix as mix_pools

    if not dataset and not bioasq and parallel is None:
        raise ConfigError("give at least one source: --dataset, --bioasq or --parallel")
    weights = _weights(mix, parallel)
    sources: dict[str, int] = {}
    skipped_rows: dict[str, int] = {}
    samples = []
    for name in dataset or []:
        loaded, info = load_dataset(name, subset, split, FieldMap.parse(fields) if fields else None, False, data_dir)
        print_skipped(info.skipped_rows, info.skipped)
        loaded = loaded[:limit] if limit else loaded
        samples += loaded
        sources[info.source] = len(loaded)
        if info.skipped:
            skipped_rows[info.source] = info.skipped
    free = _bioasq(bioasq or [], sources, skipped_rows)
    pairs = [p for p in _pairs(parallel) if isinstance(p, Pair)] if parallel else []
    overlaps: list[decon.Overlap] = []
    if decontaminate and (samples or free):
        evals = decon.local_eval_sets(data_dir, against or [])
        from medcouncil.tools.embeddings import build_embedder

        with err_console.status(f"Checking {len(samples) + len(free)} items against {len(evals)} evaluation items…"):
            found = decon.find_overlaps(
                [(s.id, s.question) for s in samples] + [(f.id, f.question) for f in free], evals, build_embedder()
            )
        overlaps = list(found.values())
        samples = [s for s in samples if s.id not in found]
        free = [f for f in free if f.id not in found]
    from medcouncil.scenarios.training.distill import read_rationales

    taught: dict[str, str] = {}
    for path in rationales or []:
        taught.update(read_rationales(path))
    used = len({taught_key(s, taught) for s in samples} - {None})  # rationales used (one may teach two items)
    if unmatched := len(taught) - used:
        err_console.print(
            f"[warning]{unmatched} of {len(taught)} kept rationales match no item built (ids of another dataset, or "
            "items dropped as evaluation items)[/]"
        )
    pools = role_pools(samples, pairs, seed, free, taught)
    total = size or len(samples) + len(free) + len(pairs)
    examples, counts = mix_pools(pools, weights, total, seed)
    if not examples:
        raise ConfigError("no examples: every item was dropped or the mix selects empty roles")
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as handle:
        for example in examples:
            record = {"messages": [m.model_dump() for m in example.messages], "source": example.source}
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    lengths = [sum(len(m.content) for m in e.messages) for e in examples]
    with err_console.status("Counting tokens…"):
        tokens = _token_lengths(examples, base)
    card = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "medcouncil_version": version("medcouncil"),
        "examples": len(examples),
        "per_role": counts,
        "pools": {role: len(pool) for role, pool in pools.items()},
        "sources": sources,
        "malformed_rows_skipped": skipped_rows,
        "mix": {role: round(weight, 4) for role, weight in weights.items()},
        "mix_target": {role: round(weight, 4) for role, weight in target_mix(pools, weights).items()},
        "seed": seed,
        "rationales": {
            "files": [str(p) for p in rationales or []],
            "kept": len(taught),
            "used": used,
        },
        "characters": {"min": min(lengths), "median": statistics.median(lengths), "max": max(lengths)},
        "tokens": tokens,
        "decontamination": {
            "on": decontaminate,
            "near_duplicate_threshold": decon.NEAR_DUPLICATE_TRAINING,
            "against": [str(p) for p in against or []],
            **decon.summarise(overlaps),
            "dropped": [o.model_dump() for o in overlaps],
        },
    }
    card_path = out.with_suffix(".card.json")
    card_path.write_text(json.dumps(card, indent=2, ensure_ascii=False), encoding="utf-8")
    console.print(
        f"{len(examples)} examples ({', '.join(f'{r} {n}' for r, n in counts.items())}); "
        f"{len(overlaps)} items dropped as evaluation overlaps",
        markup=False,
    )
    console.print(f"wrote {out} and {card_path}", markup=False)
