from __future__ import annotations

import pytest

from medcouncil.tools.mcqa import MCQA_TEMPLATE, format_mcqa, parse_options


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("A=Heart;B=Liver", {"A": "Heart", "B": "Liver"}),
        ("a: Heart ; b) Liver;C. Kidney", {"A": "Heart", "B": "Liver", "C": "Kidney"}),
        ("B=2 mg/kg IV;A=5 mg PO\n", {"A": "5 mg PO", "B": "2 mg/kg IV"}),
        ("A=천식;B=폐렴", {"A": "천식", "B": "폐렴"}),
    ],
)
def test_parse_options(spec: str, expected: dict[str, str]) -> None:
    assert parse_options(spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("Heart;Liver", "not LETTER=TEXT"),
        ("A=x;A=y", "twice"),
        ("A=x", "at least two"),
        ("K=x;A=y", "not LETTER"),
        ("A=x;C=y", "none missing"),
    ],
)
def test_parse_options_rejects(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_options(spec)


def test_format_mcqa_lists_options_in_the_template() -> None:
    text = format_mcqa("  Which organ pumps blood? ", {"A": "Heart", "B": "Liver"})
    assert text == MCQA_TEMPLATE.format(
        question="⟪Which organ pumps blood?⟫", options="A. ⟪Heart⟫\nB. ⟪Liver⟫", reasoning=""
    )
    assert text.endswith("Answer:")


def test_reasoning_goes_before_the_answer_cue_and_ten_options_are_letters_a_to_j() -> None:
    options = {letter: f"option {letter}" for letter in "ABCDEFGHIJ"}
    assert parse_options(";".join(f"{k}={v}" for k, v in options.items())) == options
    text = format_mcqa("Q?", options, reasoning="Because of X.\n")
    assert text.endswith("J. ⟪option J⟫\n\nReasoning:\nBecause of X.\n\nAnswer:")
    assert format_mcqa("Q?", options, reasoning="  ") == format_mcqa("Q?", options)
