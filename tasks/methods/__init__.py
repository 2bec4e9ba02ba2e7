"""Methods under comparison: target strategies by name (which text each training example learns)."""
