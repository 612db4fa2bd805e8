"""Package list for setuptools; everything else is in pyproject.toml.

pyproject.toml cannot combine a package search under src/ with a package that lives elsewhere,
so the top-level sample_data/ folder joins the search result here as napari_nanoscopy.sample_data.
"""

from setuptools import find_packages, setup

setup(packages=[*find_packages("src"), "napari_nanoscopy.sample_data"])
