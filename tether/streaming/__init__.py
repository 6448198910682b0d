"""Reading a response's log: replay after a cursor, then follow live."""
