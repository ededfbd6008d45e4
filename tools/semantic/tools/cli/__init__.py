"""The `semantic` command (entry point :func:`semantic.tools.cli.main.main`): the dev stack,
migrations, the model build, benches, evaluation, token minting and the maintenance calls
to the search service's Admin API. One module per group of subcommands; each imports what
it runs only when it runs."""
