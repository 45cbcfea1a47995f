"""Cron schedules: evaluating expressions and firing due schedules."""
