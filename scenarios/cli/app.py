"""The ``medcouncil`` command: one typer app, one small module per group of subcommands."""

from __future__ import annotations

import functools
import logging
import signal
from collections.abc import Callable
from typing import Any

import typer
from rich.markup import escape

from medcouncil.scenarios.cli import arena as arena_cli
from medcouncil.scenarios.cli import bench as bench_cli
from medcouncil.scenarios.cli import chat as chat_cli
from medcouncil.scenarios.cli import compare as compare_cli
from medcouncil.scenarios.cli import data as data_cli
from medcouncil.scenarios.cli import distill as distill_cli
from medcouncil.scenarios.cli import federate as federate_cli
from medcouncil.scenarios.cli import finetune as finetune_cli
from medcouncil.scenarios.cli import index as tools_cli
from medcouncil.scenarios.cli import index_eval
from medcouncil.scenarios.cli import replay as replay_cli
from medcouncil.scenarios.cli import roles as roles_cli
from medcouncil.scenarios.cli import serve as serve_cli
from medcouncil.serving.common.console import err_console
from medcouncil.serving.common.errors import MedcouncilError


def _setup() -> None:
    from rich.logging import RichHandler

    handler = RichHandler(console=err_console, show_time=False, show_path=False)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", handlers=[handler])
    # SIGTERM ends a command as Ctrl-C does: engines it started are stopped, the resume hint is printed. A shell
    # that starts a command in the background leaves SIGINT ignored: give it back its default.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminate)


def _terminate(signum: int, frame: object) -> None:
    # Re-raised as SIGINT so that a running asyncio loop cancels its task (and its clean-ups run) as on Ctrl-C.
    signal.raise_signal(signal.SIGINT)


app = typer.Typer(
    name="medcouncil",
    help="A council of clinical agents on AutoGen, served locally by llama.cpp or vLLM.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def expected_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Print an expected failure as one line (plus any log tail) and exit non-zero, without a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except MedcouncilError as error:
            err_console.quiet = False  # a quiet process (a training rank other than 0) still reports its failure
            first, _, rest = str(error).partition("\n")
            err_console.print(f"[error]error:[/] {escape(first)}", soft_wrap=True)  # a message is text, not markup
            if rest:
                err_console.print(rest, style="usage", markup=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err_console.print("[warning]interrupted[/]")
            raise typer.Exit(130) from None

    return wrapper


app.callback()(_setup)
app.command()(expected_errors(serve_cli.serve))
app.command()(expected_errors(serve_cli.ask))
app.command()(expected_errors(chat_cli.chat))
app.command()(expected_errors(replay_cli.replay))
app.command()(expected_errors(bench_cli.bench))
app.command()(expected_errors(bench_cli.report))
app.command()(expected_errors(compare_cli.compare))
app.command()(expected_errors(roles_cli.roles))
app.command()(expected_errors(finetune_cli.finetune))
app.command()(expected_errors(distill_cli.distill))
app.command()(expected_errors(federate_cli.federate))
app.command()(expected_errors(arena_cli.arena))
for _command in (tools_cli.add, tools_cli.stats, tools_cli.query, tools_cli.remove):
    tools_cli.index_app.command()(expected_errors(_command))
tools_cli.index_app.command("eval")(expected_errors(index_eval.eval_command))
app.add_typer(tools_cli.index_app, name="index")
data_cli.data_app.command()(expected_errors(data_cli.build))
app.add_typer(data_cli.data_app, name="data")


if __name__ == "__main__":  # python -m medcouncil.scenarios.cli.app (e.g. under accelerate launch)
    app()
