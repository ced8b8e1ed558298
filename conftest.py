"""The repository's root conftest: loads pgqueue's pytest plugin for tests/ and examples/.

Applications get the plugin from its ``pytest11`` entry point; this suite turns that off
(``-p no:pgqueue`` in pyproject.toml) and loads it here, after pytest-cov has started.
"""

pytest_plugins = ("pgqueue.testing.plugin",)
