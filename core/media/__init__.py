"""Media: decoding images and PDFs, OCR, perceptual hashes, text chunking."""
