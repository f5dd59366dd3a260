"""The HTTP service: a JSON API over a Locator and a self-contained map page."""
