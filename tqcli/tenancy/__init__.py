"""Sharing one database between teams: queue and tenant limits, weighted fair claims, their settings.

`limits` and `fairness` are rules, run inside the caller's transaction (a
submit's, a claim's); `settings` is the service behind `queue` and
`tenant`, and `declarative` the one behind `apply` and `export`.
"""
