"""Slack adapter: translates Slack events to core requests and core results to Block Kit."""
