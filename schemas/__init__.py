"""The contracts of medline-ingest: the indexed document, broker messages, dead letters, jobs.

Nothing outside this package invents the shape of those; it builds and reads these models.
"""
