"""What an endpoint medcouncil did not start serves, for keying its response cache.

Such an endpoint is known by its URL and model name only; a checkpoint swapped in behind them would read the answers
cached for the one before. Its identity is its own entry of the model listing (vLLM names the weights' folder as
``root``) and the identity probe's greedy token with its log-probability (:func:`medcouncil.serving.pool.identify`).
Identities seen before are kept per URL and name (``identities.json`` in the cache folder): a probe within
:data:`CACHE_IDENTITY_TOLERANCE` of one of them is the same weights (kernels and batches move the last digits), any
other is new weights with a cache of their own.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path

from medcouncil.serving.common.paths import cache_dir, write_private
from medcouncil.serving.pool import ReplicaIdentity

CACHE_IDENTITY_TOLERANCE = 0.02
"""How far the probe's log-probability may move on the same weights behind the same URL (one machine, other
batches); tighter than replicas' :data:`medcouncil.serving.pool.IDENTITY_TOLERANCE`, so that two checkpoints of one
fine-tune are told apart. A move beyond it costs a cache miss, never another model's answer."""

_SEEN: dict[tuple[str, str, str, float], str] = {}
"""This process's fingerprints by (URL, model, top token, log-probability): one file read per endpoint."""


def registry_path() -> Path:
    return cache_dir() / "llm" / "identities.json"


def served_fingerprint(url: str, model: str, identity: ReplicaIdentity) -> str:
    """The fingerprint of what ``url`` serves as ``model``: the one recorded for a probe within the tolerance, or a
    new one (recorded). An unreadable registry is read as empty (a cache miss, never a wrong answer)."""
    own = [list(entry) for entry in identity.models if entry[0] == model]
    top = identity.top[0] if identity.top else ""
    memo = (url, model, top, identity.top_logprob)
    if memo in _SEEN:
        return _SEEN[memo]
    key = f"{url.rstrip('/')}|{model}"
    path = registry_path()
    try:
        registry = json.loads(path.read_text(encoding="utf-8"))
        known = list(registry.get(key, [])) if isinstance(registry, dict) else []
    except (OSError, ValueError, AttributeError):
        registry, known = {}, []
    for entry in known:
        if (
            isinstance(entry, dict)
            and entry.get("listing") == own
            and entry.get("top") == top
            and abs(float(entry.get("logprob", 1e9)) - identity.top_logprob) <= CACHE_IDENTITY_TOLERANCE
        ):
            _SEEN[memo] = str(entry["id"])
            return _SEEN[memo]
    material = json.dumps([key, own, top, f"{identity.top_logprob:.6f}"])
    fingerprint = hashlib.sha256(material.encode()).hexdigest()[:16]
    known.append({"id": fingerprint, "listing": own, "top": top, "logprob": identity.top_logprob})
    registry = registry if isinstance(registry, dict) else {}
    registry[key] = known
    _write(path, registry)
    _SEEN[memo] = fingerprint
    return fingerprint


def _write(path: Path, registry: dict[str, object]) -> None:
    """Atomically and private to the user (another process reads whole files only); a full disk loses the record,
    not the run."""
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        write_private(path, json.dumps(registry))
