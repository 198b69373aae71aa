"""Sources: everything that turns input into stream-timed records."""
