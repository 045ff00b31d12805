"""Assets and device twins kept in sync both ways, by one field-ownership table, without echoes.

Import from the module: this file re-exports nothing, so that the pure planners load no
adapter. The triggers live in sync.blueprint, imported only by function_app.
"""
