"""The in-process probe: a candidate's log-probability after the prompt, by one forward pass for one-token
candidates and by one per candidate otherwise, on a small random causal LM (no download)."""

from __future__ import annotations

import pytest
import torch

from medcouncil.serving.training.evaluate import candidate_scores

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=40, n_positions=32, n_embd=16, n_layer=1, n_head=2)
    built: torch.nn.Module = transformers.GPT2LMHeadModel(config).eval()
    return built


def test_one_token_candidates_score_as_the_next_token_log_probability(model: torch.nn.Module) -> None:
    prompt = [3, 7, 11, 5]
    fast = candidate_scores(model, prompt, [[1], [2], [9]], torch.device("cpu"))
    with torch.no_grad():
        logprobs = torch.log_softmax(model(input_ids=torch.tensor([prompt])).logits[0, -1], dim=-1)
    assert fast == pytest.approx([float(logprobs[1]), float(logprobs[2]), float(logprobs[9])], abs=1e-5)
    assert sum(torch.exp(torch.tensor(fast))) < 1.0  # three of forty tokens


def test_longer_candidates_sum_their_tokens_and_agree_with_the_fast_path(model: torch.nn.Module) -> None:
    prompt = [3, 7, 11, 5]
    (slow_first, slow_pair) = candidate_scores(model, prompt, [[1], [1, 2]], torch.device("cpu"))
    (fast_first,) = candidate_scores(model, prompt, [[1]], torch.device("cpu"))
    assert slow_first == pytest.approx(fast_first, abs=1e-5)  # the same number by either path
    with torch.no_grad():
        after = torch.log_softmax(model(input_ids=torch.tensor([[*prompt, 1]])).logits[0, -1], dim=-1)
    assert slow_pair == pytest.approx(fast_first + float(after[2]), abs=1e-5)  # log P(1) + log P(2 | 1)
