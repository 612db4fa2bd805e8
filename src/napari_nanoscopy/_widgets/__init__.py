"""napari dock widgets (Restore, Train, Metrics) and sample data: thin Qt front ends over the core.

Nothing outside this package (and ``_napari_io``) imports Qt or napari.
"""
