"""Dev functions host: serves a Python v2 FunctionApp on a laptop the way `func start` would.

Core Tools cannot be installed everywhere; this host reads the same host.json and
local.settings.json, exposes the same local endpoints and builds trigger arguments with
azure-functions' own types, so app code runs unchanged under either.
"""
