"""The suite's shared fixtures live in tests/helpers/fixtures.py, a plugin registered here."""

pytest_plugins = ["tests.helpers.fixtures"]
