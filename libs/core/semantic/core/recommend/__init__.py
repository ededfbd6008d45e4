"""Recommendations in the core: value types, the pure maths (scoring, smoothing, recency,
journeys, diversity, clustering) and the use cases (:class:`Recommender`,
:class:`Tracker`, :class:`ArchetypeRefresh`), which read and write through the protocols
of :mod:`semantic.core.recommend.ports` and never see a database driver or SQL.
"""
