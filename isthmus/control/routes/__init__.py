"""The admin API's routes, one module per resource; each checks the role, then calls the plane."""
