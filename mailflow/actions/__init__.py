"""Admin actions: what an operator changes by hand, each one store write.

In: a validated request from the API. Out: the organization (connectors, RPC,
services) or a queue (retry, freeze, thaw, delete) changed, or a lab error.
"""
