"""Server-side forwarding of consented hits to a site's vendors.

The collect pipeline's `Forwarder.sink` appends one record per (hit, vendor) to
that vendor's durable outbox before the 202; a worker per vendor sends them
(timeouts, retries with backoff, a concurrency limit, a circuit breaker) and
spools each final outcome as a `forwards` row.
"""
