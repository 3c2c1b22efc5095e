"""The fabric simulator: the live router and the shared engine timing model, in virtual time."""
