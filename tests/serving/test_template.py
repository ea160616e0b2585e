"""The Gemma chat template, rendered as llama-cpp-python and vLLM render it (sandboxed Jinja)."""

from __future__ import annotations

from typing import Any

from jinja2.sandbox import ImmutableSandboxedEnvironment

from medcouncil.serving.config import GEMMA_TEMPLATE


def render(messages: list[dict[str, Any]], add_generation_prompt: bool = False) -> str:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    template = env.from_string(GEMMA_TEMPLATE.read_text())
    return template.render(messages=messages, bos_token="<bos>", add_generation_prompt=add_generation_prompt)


def test_system_text_folds_into_first_user_turn() -> None:
    prompt = render(
        [
            {"role": "system", "content": "You are the critic."},
            {"role": "user", "content": "Is 5 mg right?"},
            {"role": "assistant", "content": ""},  # llama-cpp-python's generation prompt
        ]
    )
    assert prompt == (
        "<bos><start_of_turn>user\nYou are the critic.\n\nIs 5 mg right?<end_of_turn>\n<start_of_turn>model\n"
    )


def test_multi_agent_history_alternates() -> None:
    prompt = render(
        [
            {"role": "system", "content": "Rule one."},
            {"role": "system", "content": "Rule two."},
            {"role": "user", "content": "Case."},
            {"role": "user", "content": "Evidence [1]."},
            {"role": "assistant", "content": "Dx: asthma."},
            {"role": "assistant", "content": "Final: B."},
            {"role": "user", "content": [{"type": "text", "text": "Critique."}]},
        ],
        add_generation_prompt=True,
    )
    assert prompt == (
        "<bos><start_of_turn>user\nRule one.\n\nRule two.\n\nCase.\n\nEvidence [1].<end_of_turn>\n"
        "<start_of_turn>model\nDx: asthma.\n\nFinal: B.<end_of_turn>\n"
        "<start_of_turn>user\nCritique.<end_of_turn>\n<start_of_turn>model\n"
    )


def test_history_opening_with_the_model_gets_a_user_turn() -> None:
    prompt = render([{"role": "system", "content": "S."}, {"role": "assistant", "content": "Hello."}])
    assert prompt.startswith("<bos><start_of_turn>user\nS.<end_of_turn>\n<start_of_turn>model\nHello.")
