"""Stores: implementations of the core's ports (:mod:`semantic.core.ports`)."""
