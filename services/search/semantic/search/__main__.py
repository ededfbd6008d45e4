"""``python -m semantic.search`` runs the search service."""

from semantic.search.app import main

main()
