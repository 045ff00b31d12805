"""Local stand-ins for Azure and the asset system, so the whole product runs on a laptop.

Nothing in the app imports this package; it imports the app.
"""
