"""Storage backends behind the `ResponseStore`, `EventLog` and `JobQueue` seams."""
