"""Machine translation of dialogs: segmentation (segment.py), the translator (engine.py), the
paragraph cache (cache.py) and dialog-level translation (dialogs.py).

Import the submodules directly; this package imports nothing so that it stays cheap.
"""
