"""What the embedder and its callers agree on, apart from any transport: the kind of text
being embedded. The embedder's model layer, its engine and the gRPC client import it from
here, so it is defined once and the model layer stays free of grpc."""

from __future__ import annotations

from typing import Literal

InputType = Literal["query", "document"]
"""A search query or a stored document; models may prefix each differently."""
