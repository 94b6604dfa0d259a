"""Storage: the Library (catalog, vectors, keyword index, blobs) and its backends."""
