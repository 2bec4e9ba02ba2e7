"""Engines the stages drive: generation backends, model references, LoRA training, the lm-eval harness."""
