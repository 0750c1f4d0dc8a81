"""The native fast path of the forwarder (``forwarder/_fastroute.c``); everything else is
declared in pyproject.toml. Plain C and the CPython API: a C compiler and Python.h suffice."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "forwarder._fastroute",
            sources=["forwarder/_fastroute.c", "forwarder/_rdkbridge.c"],
            depends=["forwarder/_rdkbridge.h"],
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
        )
    ]
)
