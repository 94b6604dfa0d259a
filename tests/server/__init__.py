"""Server-mode storage against real PostgreSQL and a real S3 server."""
