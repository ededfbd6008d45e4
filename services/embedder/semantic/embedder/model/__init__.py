"""Embedding models: directories of model.onnx + tokenizer.json + manifest.json.

    manifest     the manifest schema (what the graph is, how to pool, prefixes, provenance)
    onnx_model   the runtime: OnnxEmbeddingModel.load(dir).encode / infer / embed
    bert_graph   a BERT encoder written as an ONNX graph from safetensors weights
    quantizer    the int8 rewrite of such a graph (per-token activations, smoothing)
    builder      `semantic model build`: the default model's fp32 and int8 directories
    errors       ModelError and its subclasses

Import the submodules directly; nothing heavy is imported here.
"""
