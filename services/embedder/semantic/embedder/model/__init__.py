"""Embedding models: directories of model.onnx + tokenizer.json + manifest.json.

    manifest      the manifest schema (what the graph is, how to pool, prefixes, provenance)
    graph_limits  the sizes of a graph's embedding tables, read from the file's protobuf wire
    onnx_model    the runtime: OnnxEmbeddingModel.load(dir).encode / infer / embed
    errors        ModelError and its subclasses

Loading and serving only; the builder of these directories is tooling
(``semantic.tools.modelbuild``). Import the submodules directly; nothing heavy is imported
here.
"""
