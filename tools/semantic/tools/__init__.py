"""Tooling: benchmarks, evaluation, the embedded dev stack, the model builder, the dev CLI.

Never imported by the runtime packages and not installed in the runtime image.
"""
