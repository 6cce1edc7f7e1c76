"""``tasksaga``: the command line for users and operators, a client of the HTTP API."""
