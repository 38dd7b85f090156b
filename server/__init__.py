"""The Digis server: connections, session actors, HTTP surface, CLI."""
