"""The peers tasksaga is compared with, each run by the same sweep on the same machine."""
