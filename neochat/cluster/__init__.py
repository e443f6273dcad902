"""Several NeoChat nodes as one: routing and presence through Redis."""
