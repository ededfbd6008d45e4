"""embedder."""
