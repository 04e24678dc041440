"""One module per contender; each runs as its own process and prints one JSON line with its figures."""
