"""Installs the inval Python package: `pip install ./proto/python`.

Plain setuptools without a pyproject.toml on purpose: pip then builds with
the setuptools already installed (Debian's python3-setuptools) instead of
fetching a build backend from PyPI into an isolated environment, so the
install works offline. The Lua scripts ship as package data.
"""

from setuptools import setup

setup(
    name="inval",
    version="0.1.0",
    description="Client of the inval cache-invalidation service: publisher "
                "client and the cache-aside read path for Redis",
    license="MIT",
    python_requires=">=3.9",
    packages=["inval"],
    package_data={"inval": ["scripts/*.lua"]},
    include_package_data=False,
    install_requires=["redis>=3.5", "msgpack>=1.0"],
    zip_safe=False,
)
