"""Bottom layer: where mail and lab state rest (SQLite), the directory, mailbox stores and the store driver."""
