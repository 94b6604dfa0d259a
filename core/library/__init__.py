"""Storage: the catalog, vectors, keyword index and blobs, embedded or on servers."""
