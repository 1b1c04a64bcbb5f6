"""Maps the repository's python/ folder onto the `kairos` import root.

pyproject.toml cannot list packages that live under a renamed directory, so this computes them:
every package below python/ becomes kairos.<name>; tests stay out of the wheel.
"""

from setuptools import find_packages, setup

setup(packages=["kairos", *(f"kairos.{p}" for p in find_packages("python", exclude=["tests", "tests.*"]))])
