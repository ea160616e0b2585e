"""FedAvg against a hand computation, FedProx's proximal term, the bytes an adapter costs."""

from __future__ import annotations

import pytest
import torch

from medcouncil.serving.training.aggregate import (
    AggregationError,
    ClientUpdate,
    fedavg,
    proximal_term,
    tensor_bytes,
)


def test_fedavg_is_the_example_weighted_mean_by_hand() -> None:
    a = ClientUpdate("hospital-a", {"lora_A": torch.tensor([[1.0, 2.0]]), "lora_B": torch.tensor([4.0])}, examples=1)
    b = ClientUpdate("hospital-b", {"lora_A": torch.tensor([[3.0, 6.0]]), "lora_B": torch.tensor([0.0])}, examples=3)
    averaged = fedavg([a, b])
    # by hand: (1·1 + 3·3)/4 = 2.5, (1·2 + 3·6)/4 = 5.0, (1·4 + 3·0)/4 = 1.0 (not the plain mean 2, 4, 2)
    assert torch.equal(averaged["lora_A"], torch.tensor([[2.5, 5.0]]))
    assert torch.equal(averaged["lora_B"], torch.tensor([1.0]))
    half = ClientUpdate("c", {"w": torch.tensor([1.0, 3.0], dtype=torch.bfloat16)}, examples=2)
    other = ClientUpdate("d", {"w": torch.tensor([3.0, 5.0], dtype=torch.bfloat16)}, examples=2)
    mean = fedavg([half, other])["w"]
    assert mean.dtype == torch.bfloat16 and torch.equal(mean, torch.tensor([2.0, 4.0], dtype=torch.bfloat16))
    assert torch.equal(fedavg([a])["lora_A"], a.tensors["lora_A"])  # one client: its own tensors


def test_updates_that_cannot_be_averaged_are_named() -> None:
    a = ClientUpdate("hospital-a", {"w": torch.zeros(2, 2)}, examples=5)
    with pytest.raises(AggregationError, match="no client update"):
        fedavg([])
    with pytest.raises(AggregationError, match="client hospital-b trained on 0 examples"):
        fedavg([a, ClientUpdate("hospital-b", {"w": torch.zeros(2, 2)}, examples=0)])
    with pytest.raises(AggregationError, match=r"client hospital-b's w has shape \(2, 3\), client hospital-a's"):
        fedavg([a, ClientUpdate("hospital-b", {"w": torch.zeros(2, 3)}, examples=5)])
    with pytest.raises(AggregationError, match=r"client hospital-c's tensors differ from client hospital-a's \(v, w\)"):
        fedavg([a, ClientUpdate("hospital-c", {"v": torch.zeros(2, 2)}, examples=5)])


def test_the_proximal_term_is_half_mu_times_the_squared_distance_and_pulls_back() -> None:
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    anchor = {"w": torch.tensor([0.0, 0.0])}
    term = proximal_term({"w": w}, anchor, mu=0.1)
    assert term.item() == pytest.approx(0.1 / 2 * (1.0 + 4.0))
    term.backward()  # type: ignore[no-untyped-call]
    assert torch.allclose(w.grad, torch.tensor([0.1, 0.2]))  # type: ignore[arg-type]  # μ·(w − w_global)
    assert proximal_term({"w": w}, anchor, mu=0.0).item() == 0.0  # FedAvg
    with pytest.raises(AggregationError, match="no tensor v"):
        proximal_term({"w": w}, {"v": torch.zeros(2)}, mu=0.1)


def test_bytes_count_elements_in_their_dtype() -> None:
    tensors = {"a": torch.zeros(4, 8, dtype=torch.float32), "b": torch.zeros(10, dtype=torch.bfloat16)}
    assert tensor_bytes(tensors) == 4 * 8 * 4 + 10 * 2
