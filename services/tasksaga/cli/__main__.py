"""``python -m tasksaga.cli``: the same as the ``tasksaga`` command."""

from tasksaga.cli.app import main

main()
