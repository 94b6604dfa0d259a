"""Models: CLIP, the sentence model, micro-batching, priority lanes of the model threads."""
