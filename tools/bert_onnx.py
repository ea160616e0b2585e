"""The same BERT forward pass as ``bert.py``, run by ONNX Runtime (already installed: Chroma depends on it).

ONNX Runtime's CPU kernels (fused attention, packed GEMM weights) embed a short query 1.7 times and a batch of
passages 3.7 times faster than NumPy on 2 cores; the query's embedding is most of a search's latency. The graph
ships next to the model as ``encoder.onnx``: a few kilobytes of operators, no weights; the weights are the ones
``BertSentenceEncoder`` loaded from the safetensors file, handed to ONNX Runtime when the session is created. The
graph is made by :func:`build_graph` (needs the ``onnx`` package: a development tool, ``python -m
medcouncil.tools.bert_onnx FOLDER`` writes it) and checked against the NumPy pass in the tests. A folder without the
file, or a machine without ONNX Runtime, runs the NumPy pass.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from medcouncil.tools.bert import BertSentenceEncoder

GRAPH_FILE = "encoder.onnx"
THREADS = 2
"""ONNX Runtime's intra-op threads (the machines this runs on have 2 cores or more; its threads do not spin)."""


def weights(encoder: BertSentenceEncoder) -> dict[str, np.ndarray[Any, Any]]:
    """The graph's initializers, by name, from the encoder's loaded (float32, (in, out)-laid) weights."""
    hidden = encoder.word.shape[1]
    named: dict[str, np.ndarray[Any, Any]] = {
        "word": encoder.word,
        "position": encoder.position,
        "token_type": encoder.token_type,
        "ln.w": encoder.ln[0],
        "ln.b": encoder.ln[1],
    }
    for number, layer in enumerate(encoder.layers):
        for index, name in enumerate(("q", "k", "v")):
            named[f"l{number}.{name}.w"] = np.ascontiguousarray(layer.qkv[:, index * hidden : (index + 1) * hidden])
            named[f"l{number}.{name}.b"] = layer.qkv_bias[index * hidden : (index + 1) * hidden]
        named |= {
            f"l{number}.out.w": layer.out,
            f"l{number}.out.b": layer.out_bias,
            f"l{number}.ln1.w": layer.ln1[0],
            f"l{number}.ln1.b": layer.ln1[1],
            f"l{number}.up.w": layer.up,
            f"l{number}.up.b": layer.up_bias,
            f"l{number}.down.w": layer.down,
            f"l{number}.down.b": layer.down_bias,
            f"l{number}.ln2.w": layer.ln2[0],
            f"l{number}.ln2.b": layer.ln2[1],
        }
    return {name: np.ascontiguousarray(value, dtype=np.float32) for name, value in named.items()}


class OnnxForward:
    """``forward(ids, bias) -> hidden states`` on an ONNX Runtime session."""

    def __init__(self, graph: Path, encoder: BertSentenceEncoder) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = THREADS
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        named = weights(encoder)
        self._values = [ort.OrtValue.ortvalue_from_numpy(value) for value in named.values()]  # kept alive
        options.add_external_initializers(list(named), self._values)
        self.session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])

    def __call__(self, ids: np.ndarray[Any, Any], bias: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        positions = np.arange(ids.shape[1], dtype=np.int64)
        (hidden,) = self.session.run(None, {"ids": ids, "positions": positions, "bias": bias})
        return np.asarray(hidden, dtype=np.float32)


def load_forward(folder: Path, encoder: BertSentenceEncoder) -> OnnxForward | None:
    """The ONNX Runtime pass for this folder's model, or None (no graph, no ONNX Runtime, or a graph that does not
    fit the weights: the NumPy pass runs)."""
    graph = folder / GRAPH_FILE
    if not graph.is_file():
        return None
    try:
        return OnnxForward(graph, encoder)
    except Exception:
        return None


def build_graph(encoder: BertSentenceEncoder) -> bytes:
    """The ONNX graph of the encoder's forward pass, its weights declared external (given at session creation)."""
    from onnx import TensorProto, helper

    hidden = encoder.word.shape[1]
    heads = encoder.heads
    nodes: list[Any] = []
    constants: dict[str, np.ndarray[Any, Any]] = {
        "heads_shape": np.asarray([0, 0, heads, hidden // heads], dtype=np.int64),
        "hidden_shape": np.asarray([0, 0, hidden], dtype=np.int64),
        "scale": np.asarray(1 / np.sqrt(hidden // heads), dtype=np.float32),
        "half": np.asarray(0.5, dtype=np.float32),
        "one": np.asarray(1.0, dtype=np.float32),
        "inv_sqrt2": np.asarray(1 / np.sqrt(2), dtype=np.float32),
    }
    initializers = [
        helper.make_tensor(
            n, TensorProto.FLOAT if v.dtype == np.float32 else TensorProto.INT64, v.shape, v.flatten().tolist()
        )
        for n, v in constants.items()
    ]
    for name, value in weights(encoder).items():
        external = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=list(value.shape))
        external.data_location = TensorProto.EXTERNAL
        entry = external.external_data.add()
        entry.key, entry.value = "location", "provided-at-session-creation"
        initializers.append(external)
    counter = iter(range(10**6))

    def op(kind: str, inputs: list[str], **attributes: Any) -> str:
        output = f"t{next(counter)}"
        nodes.append(helper.make_node(kind, inputs, [output], **attributes))
        return output

    def linear(x: str, prefix: str) -> str:
        return op("Add", [op("MatMul", [x, f"{prefix}.w"]), f"{prefix}.b"])

    def norm(x: str, prefix: str) -> str:
        return op("LayerNormalization", [x, f"{prefix}.w", f"{prefix}.b"], axis=-1, epsilon=encoder.eps)

    x = op("Add", [op("Gather", ["word", "ids"]), op("Gather", ["position", "positions"])])
    x = norm(op("Add", [x, "token_type"]), "ln")
    for number in range(len(encoder.layers)):
        p = f"l{number}"
        split = {n: op("Reshape", [linear(x, f"{p}.{n}"), "heads_shape"]) for n in ("q", "k", "v")}
        q = op("Transpose", [split["q"]], perm=[0, 2, 1, 3])
        k = op("Transpose", [split["k"]], perm=[0, 2, 3, 1])
        v = op("Transpose", [split["v"]], perm=[0, 2, 1, 3])
        scores = op("Add", [op("Mul", [op("MatMul", [q, k]), "scale"]), "bias"])
        context = op("MatMul", [op("Softmax", [scores], axis=-1), v])
        context = op("Reshape", [op("Transpose", [context], perm=[0, 2, 1, 3]), "hidden_shape"])
        x = norm(op("Add", [linear(context, f"{p}.out"), x]), f"{p}.ln1")
        inner = linear(x, f"{p}.up")
        erf = op("Erf", [op("Mul", [inner, "inv_sqrt2"])])
        activated = op("Mul", [op("Mul", [inner, "half"]), op("Add", [erf, "one"])])
        x = norm(op("Add", [linear(activated, f"{p}.down"), x]), f"{p}.ln2")
    nodes.append(helper.make_node("Identity", [x], ["hidden"]))
    graph = helper.make_graph(
        nodes,
        "bert-sentence-encoder",
        [
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "length"]),
            helper.make_tensor_value_info("positions", TensorProto.INT64, ["length"]),
            helper.make_tensor_value_info("bias", TensorProto.FLOAT, ["batch", 1, 1, "length"]),
        ],
        [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["batch", "length", hidden])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="medcouncil")
    model.ir_version = 8
    return bytes(model.SerializeToString())


if __name__ == "__main__":  # python -m medcouncil.tools.bert_onnx FOLDER: write FOLDER/encoder.onnx
    from medcouncil.tools.bert import BertSentenceEncoder

    target = Path(sys.argv[1])
    (target / GRAPH_FILE).write_bytes(build_graph(BertSentenceEncoder(target, runtime="numpy")))
    print(f"wrote {target / GRAPH_FILE}")
