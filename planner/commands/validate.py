"""Placeholder until the validate command lands (the helper that owns it replaces this file)."""


def register(sub):
    pass
