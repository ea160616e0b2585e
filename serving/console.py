"""One rich console and theme shared by every command."""

from __future__ import annotations

from rich.console import Console
from rich.theme import Theme

THEME = Theme(
    {
        "notice": "dim cyan",
        "error": "bold red",
        "warning": "yellow",
        "endpoint": "bold green",
        "usage": "dim",
        "answer": "bold magenta",
        "agent.retriever": "blue",
        "agent.translator": "cyan",
        "agent.diagnostician": "green",
        "agent.critic": "yellow",
        "agent.user": "bold white",
    }
)

console = Console(theme=THEME, highlight=False)
err_console = Console(theme=THEME, stderr=True, highlight=False)
