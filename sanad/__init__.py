"""Shared code of the Sanad services: event contracts, nameko plumbing, crypto, the `sanad` CLI.

Nothing here holds domain logic; each service's domain lives under services/<name>/.
"""
