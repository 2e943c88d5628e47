"""The model hub: validate, store, find and serve shared model weights (safetensors only)."""
