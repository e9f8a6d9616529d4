"""``python -m exporter``: the same as the ``azurestack-exporter`` command."""

from .cli import entry_point

entry_point()
