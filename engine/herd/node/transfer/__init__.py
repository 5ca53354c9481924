"""Disk streams between nodes and to backup files.

``extents`` finds the data worth sending, ``codecs`` compresses it, ``stream`` defines the
framed format and its checksum (and exports/imports files), ``net`` carries it over
mutually authenticated TLS, ``progress`` publishes counters and limits bandwidth, and
``worker`` runs each end as a detached process that the ``transfer_*`` node actions manage.
"""
