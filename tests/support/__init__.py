"""What several test modules share: helpers, and the fixtures of the plugins that
``tests/conftest.py`` registers. A test module imports from here, never from another
test module (``tests/unit/test_architecture.py`` enforces it)."""
