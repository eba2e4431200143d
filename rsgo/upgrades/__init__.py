"""Upgrades: a stack's containers recreated from new images in Migrating, with an optional migration,
health gates and rollback (README "Upgrades", docs/design.md#upgrades).

``request`` reads what is asked, ``planning`` decides what is recreated, stopped and kept running,
``journal`` writes the rows a restart rolls back from, ``procedure`` does the Docker steps, ``gate``
decides when a started container counts as up, ``service`` runs the sequence and its endings.
"""
