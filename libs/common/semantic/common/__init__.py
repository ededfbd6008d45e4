"""What every process shares, below the core and the transports.

Domain errors (``errors``) and their one gRPC status table (``grpc_errors``), the settings
base (``settings``), structured logging (``log``), retries (``retry``), the embedding
vocabulary (``embedding``), input checks shared by every edge (``validation``), JWT
verification and roles (``tokens``, ``auth``), the gRPC process shell (``server``,
``health``) and the embedder's gRPC client (``embedder_client``, which implements the
core's embedder port). The core may import the pure modules (errors, settings, embedding,
validation); the gRPC ones are for the transports.
"""
