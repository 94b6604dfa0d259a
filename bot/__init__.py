"""Adapters: the ``pixrag`` command line, Discord and Slack. They translate, ``core`` works."""
