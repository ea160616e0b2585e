"""One-line messages from library failures: the first line, never a crash on an empty message."""

from __future__ import annotations

from medcouncil.serving.common.errors import ConfigError, first_line


def test_first_line_keeps_the_first_line_or_names_the_type() -> None:
    assert first_line(ValueError("bad row\n  at column 3\n")) == "bad row"
    assert first_line(RuntimeError("\n  the engine refused\ndetails")) == "the engine refused"
    assert first_line(TimeoutError()) == "TimeoutError"  # str() is empty: no IndexError in an error path
    assert first_line(ConfigError("   ")) == "ConfigError"
