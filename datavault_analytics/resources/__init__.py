"""One module per system: its resource and the IO manager that hands data to the next system."""
