"""Discord adapter: converts interactions and gateway events into core calls and renders results.

Entry points: :func:`bot.discord.app.run_discord` and :func:`bot.discord.app.build_bot`.
"""
