"""Alembic migrations of the coordinator database: the database outlives versions of the program.

`mlc.coordinator.connect` applies them (`upgrade head`) when it opens a database that is behind, and
refuses one made by a newer program. A new schema change is a new file in `versions/`, written by hand
(or started with `alembic -x ... revision`), never an edit of an applied one.
"""
