from __future__ import annotations

import pytest

from medcouncil.agents.preserve import (
    english_pattern,
    placed_text,
    protect,
    protected_terms,
    restore_spans,
    unsupported_values,
    untranslated,
    written_out,
)

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
    result = restore_spans(translation, spans)
    text, missing = result.text, result.flagged
    for span in spans:
        assert span in text
    assert "⟦" not in text
    assert len(missing) == sum(1 for n in range(1, len(spans) + 1) if f"⟦{n}⟧" not in translation)


def test_a_value_is_flagged_never_moved() -> None:
    masked, spans = protect("58세 남성, 40분간 흉통, ECG II 유도")
    assert spans == ["58", "40", "ECG", "II"] and masked.startswith("⟦1⟧세")
    # The model echoed a prompt's example placeholder and swapped two values.
    result = restore_spans("A ⟦2⟧-year-old man, chest pain for ⟦1⟧ minutes, ⟦1⟧ in lead ⟦4⟧", spans)
    assert "40-year-old" not in result.text and "58 minutes" not in result.text
    assert result.placed == [4]
    assert "58" in result.flagged and result.text.endswith("]") and "[?]" in result.text
    # Swapped but unique: both suspect, the others placed.
    swapped = restore_spans("⟦2⟧ then ⟦1⟧ then ⟦3⟧ ⟦4⟧", spans)
    assert swapped.placed == [3, 4] and swapped.flagged == ["58", "40"]
    assert placed_text(swapped.text) == "[?] then [?] then ECG II"
    # An empty translation places nothing: every value is listed as not placed.
    empty = restore_spans("", spans)
    assert empty.placed == [] and placed_text(empty.text) == "" and all(span in empty.text for span in spans)


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


def test_a_reply_that_is_no_translation_is_told_apart() -> None:
    masked, spans = protect("58세 남성, ECG에서 ST elevation, troponin 2.3 ng/mL")
    prompt = f"Translate the following Korean clinical text into English.\n{masked}"
    good = "A 58-year-old man; ECG shows ST elevation, troponin 2.3 ng/mL"
    assert untranslated(good, prompt, spans, [], to_korean=False) is None
    assert untranslated(good, prompt, spans, ["ECG", "ST"], to_korean=False) is None  # written out: not lost
    assert "no text" in str(untranslated("  ", prompt, spans, [], False))
    echo = "Translate the following Korean clinical text into English.\n10. 11. 12."  # what the 270M writes
    assert "back" in str(untranslated(echo, prompt, spans, [], False))
    assert "Korean" in str(untranslated("58세 남성, 흉통과 식은땀 ECG", prompt, spans, [], False))
    assert untranslated("58세 남성, 흉통과 식은땀 ECG", prompt, spans, [], to_korean=True) is None  # Korean wanted
    dropped = "A man with chest pain."
    assert "dropped 5 of 6" in str(untranslated(dropped, prompt, spans, spans[1:], False))


def test_a_value_written_out_of_order_or_as_part_of_another_is_told_apart() -> None:
    spans = ["II", "III", "aVF"]
    prompt = "Translate the following Korean clinical text into English.\n유도 ⟦1⟧, ⟦2⟧, ⟦3⟧에서 ST 상승"
    # Korean word order: the model wrote every placeholder, two of them swapped. Not lost: a translation.
    swapped = restore_spans("ST elevation in leads ⟦2⟧, ⟦1⟧ and ⟦3⟧", spans)
    assert swapped.flagged == ["II", "III"] and swapped.missing == []
    assert untranslated(placed_text(swapped.text), prompt, spans, swapped.missing, False) is None
    # Two placeholders never written: "II" is not found inside "III", so two of three values are lost.
    dropped = restore_spans("ST elevation in lead III", spans)
    assert dropped.missing == spans
    assert "dropped 2 of 3" in str(untranslated(placed_text(dropped.text), prompt, spans, dropped.missing, False))
    assert written_out("II", "leads II and III") and not written_out("II", "lead III")


def test_the_council_reads_the_source_when_the_translation_fails() -> None:
    import asyncio

    from medcouncil.agents.calls import translate
    from medcouncil.agents.protocol import Turn
    from medcouncil.serving.replay import ReplayModel

    source = "58세 남성, ECG에서 ST elevation"
    echo = "Translate the following Korean clinical text into English for a team of doctors. Copy every placeholder"
    turn = Turn(agent="translator", content="")
    assert asyncio.run(translate(ReplayModel([echo]), source, turn, to_korean=False)) == source
    assert turn.content.startswith("Not translated (the model gave its instructions or the text back)")
    fine = Turn(agent="translator", content="")
    reply = "A ⟦1⟧-year-old man; ⟦2⟧ shows ⟦3⟧ ⟦4⟧"
    assert (
        asyncio.run(translate(ReplayModel([reply]), source, fine, False)) == "A 58-year-old man; ECG shows ST elevation"
    )
