"""mailflow for other people's test suites: the pytest plugin (``mailflow.testing.plugin``)
and the lab it starts (``mailflow.testing.lab``)."""
