"""Function apps used only by the integration tests of the dev functions host."""
