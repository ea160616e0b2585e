from __future__ import annotations

import pytest

from medcouncil.agents.preserve import english_pattern, protect, protected_terms, restore, unsupported_values

KOREAN = "환자는 FEV1 62%, salbutamol 100 mcg 흡입 후 호전, HbA1c 7.2%, K 3.1 mmol/L이다."


def test_korean_text_masks_every_latin_term_number_and_unit() -> None:
    masked, spans = protect(KOREAN)
    assert spans == ["FEV1", "62%", "salbutamol", "100 mcg", "HbA1c", "7.2%", "K", "3.1 mmol/L"]
    assert "salbutamol" not in masked and "⟦3⟧" in masked and "환자는" in masked


@pytest.mark.parametrize(
    "translation",
    [
        "FEV1 ⟦1⟧ ⟦2⟧, improved after ⟦3⟧ ⟦4⟧; ⟦5⟧ ⟦6⟧, ⟦7⟧ ⟦8⟧.",  # all placeholders kept
        "improved after ⟦3⟧ ⟦4⟧",  # most dropped
        "garbage with no placeholders at all",
        "⟦9⟧ invented placeholder ⟦1⟧",
    ],
)
def test_restore_never_loses_or_alters_a_term(translation: str) -> None:
    _, spans = protect(KOREAN)
    text, missing = restore(translation, spans)
    for span in spans:
        assert span in text
    assert "⟦" not in text
    assert len(missing) == sum(1 for n in range(1, len(spans) + 1) if f"⟦{n}⟧" not in translation)


def test_english_answer_keeps_values_codes_and_the_users_latin_terms() -> None:
    pattern = english_pattern(protected_terms(KOREAN))
    masked, spans = protect("Asthma: give salbutamol 100 mcg; FEV1 was 62% and the ECG normal.", pattern)
    assert spans == ["salbutamol", "100 mcg", "FEV1", "62%", "ECG"]
    assert masked.startswith("Asthma: give ⟦1⟧")  # ordinary English words are translated


def test_unsupported_values() -> None:
    assert unsupported_values("Give 500 mg IV, then 0.5 mg IM; K 3.1 mmol/L", "adrenaline 0.5mg IM, K 3.1 mmol/L") == [
        "500 mg"
    ]
    assert unsupported_values("No doses here.", "") == []
