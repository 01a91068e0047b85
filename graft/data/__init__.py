"""Image data: built-in sources, framing into a common geometry, splits, listings and fingerprints.

Nothing is imported here: ``graft watch`` reads listings (``graft.data.listing``) without torch.
"""
