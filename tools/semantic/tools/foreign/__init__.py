"""Moving in from and out to other vector stores.

Readers turn a FAISS index, an Annoy index, a Chroma persistent directory, a Qdrant
collection (local directory or server), a JSONL file or a Parquet file into
:class:`~semantic.tools.foreign.records.ForeignRecord` values (one module per format);
:mod:`~semantic.tools.foreign.load` writes them through the search service's ``Upsert``;
:mod:`~semantic.tools.foreign.export` writes the stored nodes out as FAISS, JSONL or Chroma.
The third-party libraries come with the ``migrate`` extra and are imported only by the
format that needs them.
"""
