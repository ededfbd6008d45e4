"""The embedder: a stateless gRPC service turning texts into vectors with ONNX models.

servicer  semantic.v1.Embedder: protobuf -> engine -> protobuf
engine    the EmbeddingEngine: models by id, per-call limits, batching (``batcher``)
loading   LoadModel: a model directory admitted, checked and served
model     the EmbeddingModel protocol and its ONNX adapter (runtime only; the builder is
          in ``semantic.tools.modelbuild``)
app       the process: settings, health, shutdown
"""
