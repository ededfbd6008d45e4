"""``python -m semantic.embedder`` runs the embedder service."""

from semantic.embedder.app import main

main()
