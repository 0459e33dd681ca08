"""Background jobs: huey carries the work, our job records carry the truth (status, steps, logs)."""
