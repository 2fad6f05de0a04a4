"""Shared test set-up: Triton's CPU interpreter for kernel tests, and helpers to run ``motif`` as a subprocess."""

import os

# Triton reads this when a module that defines @triton.jit kernels is imported: set it before any of them.
os.environ.setdefault("TRITON_INTERPRET", "1")


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def corpus_cache(tmp_path_factory):
    """One cache folder for the small embedded corpus, shared by every test that builds or reads it."""
    return tmp_path_factory.mktemp("motif-cache")
