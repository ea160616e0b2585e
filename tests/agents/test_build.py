from __future__ import annotations

from pathlib import Path

import pytest

from medcouncil.agents.build import CouncilFile
from medcouncil.serving.common.errors import ConfigError


def test_council_file_sets_roles_rounds_and_models(tmp_path: Path) -> None:
    path = tmp_path / "council.yaml"
    path.write_text(
        "roles: [retriever, diagnostician, critic]\nmax_revisions: 2\n"
        "models:\n  critic: {model: medgemma-critic}\n  diagnostician: {endpoint: 'http://127.0.0.1:8001/v1'}\n"
    )
    council = CouncilFile.load(path)
    assert council.roles == ["retriever", "diagnostician", "critic"] and council.max_revisions == 2
    assert council.models["critic"].model == "medgemma-critic" and council.models["critic"].endpoint is None
    assert council.models["diagnostician"].endpoint == "http://127.0.0.1:8001/v1"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("roles: [diagnostician, oracle]\n", r"council\.yaml:1: roles: Value error, unknown roles \['oracle'\]"),
        ("max_revisions: 1\nmodels:\n  retriever: {model: x}\n", r"council\.yaml:3: models: Value error, no model"),
        ("max_revisions: -1\n", r"council\.yaml:1: max_revisions"),
        ("roles: [critic\n", r"council\.yaml:\d+: invalid YAML"),
        # misspelt keys inside a section, and budgets that name no writing role or are not positive
        (
            "panel:\n  specialties: [cardiology, nephrology]\n  round: 5\n",
            r"council\.yaml:3: panel\.round: Extra inputs",
        ),
        ("models:\n  critic: {modle: x, endpoint: 'http://x/v1'}\n", r"council\.yaml:2: models\.critic\.modle: Extra"),
        ("max_tokens: {diagnostican: 2048}\n", r"council\.yaml:1: max_tokens: Value error, no token budget for"),
        ("max_tokens: {critic: -3}\n", r"council\.yaml:1: max_tokens: Value error, a token budget must be at least 1"),
        ("roles: [diagnostician, diagnostician]\n", r"council\.yaml:1: roles: Value error, a role is listed twice"),
    ],
)
def test_council_file_errors_name_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "council.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        CouncilFile.load(path)
