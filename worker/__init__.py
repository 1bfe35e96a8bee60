"""medline-ingest: PubMed/MEDLINE into Elasticsearch through a Redis/Celery queue."""

__version__ = "0.1.0"
