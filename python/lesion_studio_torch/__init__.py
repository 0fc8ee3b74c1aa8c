"""Lesion Studio's Noisy Student run on PyTorch (DDP via torchrun): see python/README.md."""
