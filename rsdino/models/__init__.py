"""Backbones (timm), heads and meta-architectures."""
