"""The project's shared fixtures (tests/conftest.py) for the tests that live in this app."""

from tests.conftest import _in_memory_channel_layer, api, api_as, jd, make_user, supervisor, tb  # noqa: F401
