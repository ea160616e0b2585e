"""One rich console and theme shared by every command.

Emoji codes are off: messages quote user text (ids, paths, case ids like ``agentclinic:-1``) where rich would turn
``:-1:`` into 👎 or ``:abc:`` into 🔤; markup is escaped where text is quoted, and emoji codes are never wanted.
"""

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

console = Console(theme=THEME, highlight=False, emoji=False)
err_console = Console(theme=THEME, stderr=True, highlight=False, emoji=False)
