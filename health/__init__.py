"""The app's health as one worker sees it: GET /api/health, answered from in-process state."""
