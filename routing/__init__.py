"""Middle layer: how mail moves between the SMTP endpoints, queues, servers and stores."""
