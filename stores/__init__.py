"""Bottom layer: where mail and state rest: SQLite, the directory, mailbox stores, store driver."""
