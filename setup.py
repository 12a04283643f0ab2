"""The package list, found rather than written by hand (pyproject.toml holds everything else):
every package under localsym/, and the two data folders that sit at the top of the repository
(models/, prompts/) shipped inside the wheel as localsym.models and localsym.prompts."""

from setuptools import find_namespace_packages, setup

setup(packages=find_namespace_packages(include=["localsym", "localsym.*"],
                                       exclude=["*.__pycache__"]) +
      ["localsym.models", "localsym.prompts"])
