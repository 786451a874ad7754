"""Feast integration: l2lab's offline store and feature repository helpers."""
