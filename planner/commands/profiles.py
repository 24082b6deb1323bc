"""Placeholder until the profiles command lands (the helper that owns it replaces this file)."""


def register(sub):
    pass
