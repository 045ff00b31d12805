"""Resilience: durable queues, the outbox that sends what a flow emits, retries, breakers and
hub backpressure.

Work that cannot finish now is recorded durably instead of lost; writes toward a hub stay
under its throttle and treat 429 as backpressure; a failing dependency's circuit opens.
Import from the module: this file re-exports nothing (the adapters load SDKs and pybreaker).
"""
