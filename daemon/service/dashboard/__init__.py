"""The live dashboard: static page, vendored chart library and its server routes (server.py)."""
