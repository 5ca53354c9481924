"""Ganeti's Remote API, version 2, served beside ``/v1`` on a port of its own.

A mapping layer only: every resource reads the same store and queue as ``/v1`` and every
write submits the same Herd op through the same job path, so nothing is implemented twice.
"""
