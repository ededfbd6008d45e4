"""Benchmarks behind `semantic bench`: each runs the real services on a throw-away stack and
reports its numbers next to a baseline measured in the same run.

    search      recall@10 and latency at N nodes vs. exact search
    corpus      the synthetic corpus, its loader and the tuned throw-away stack the benches share
    recommend   Track and Recommend latency vs. a dense search
    indexer     events/s and freshness vs. the embedder alone and one-by-one writes
    embedder    throughput and latency vs. the naive baseline
    soak        the whole stack under mixed load (with workload, tally and footprint)

Import the submodules directly; nothing heavy is imported here.
"""
