"""``python -m semantic.indexer`` runs the indexer."""

from semantic.indexer.app import main

main()
